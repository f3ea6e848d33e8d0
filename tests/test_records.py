"""The one trial record: its status enum, its JSON shape and its checks."""

from __future__ import annotations

import pytest

from nas.errors import UsageError
from nas.records import STATUSES, TrialRecord, TrialStatus, best_of


def record(i=0, status=TrialStatus.COMPLETE, reward=0.5):
    return TrialRecord(trial_id=i, arch_key=f"k{i}", arch={"w": 8}, status=status,
                       metrics={"accuracy": 0.9, "latency_ms": 1.5}, reward=reward, step=i + 1)


def test_round_trip_stores_the_status_value():
    data = record().to_dict()
    assert data["status"] == "complete" and isinstance(data["status"], str)
    back = TrialRecord.from_dict(data)
    assert back == record() and back.status is TrialStatus.COMPLETE and back.complete
    assert STATUSES == ("complete", "failed", "pruned", "rejected")


@pytest.mark.parametrize("data, message", [
    ([], "is list, not a trial record"),
    ({"trial_id": 0}, "status missing"),
    ({**record().to_dict(), "status": "ok"}, "status 'ok'; allowed: complete, failed, pruned"),
    ({**record().to_dict(), "trial_id": "0"}, "trial_id '0' is not a int"),
    ({**record().to_dict(), "trial_id": True}, "trial_id True is not a int"),
    ({**record().to_dict(), "metrics": None}, "metrics None is not a dict"),
])
def test_malformed_records_name_where(data, message):
    with pytest.raises(UsageError, match="line 7") as info:
        TrialRecord.from_dict(data, "trials.jsonl: line 7")
    assert message in str(info.value)


def test_best_of_ignores_failed_and_unscored():
    records = [record(0, reward=0.4), record(1, TrialStatus.FAILED, None), record(2, reward=None),
               record(3, reward=0.7)]
    assert best_of(records)["trial_id"] == 3
    assert best_of(records[1:3]) is None
