"""The local review backends: simulated workers, an answers file, a person at the terminal."""

from __future__ import annotations

from pathlib import Path

import pytest

from labelflow_local.review import AnswersFile, SimulatedWorkers, TerminalReviewer

TASK = {"record_id": "r1", "text": "works well", "labels": ["negative", "positive"], "header": "?"}


def test_simulated_workers_are_seeded_per_record_and_as_accurate_as_asked() -> None:
    # Given a crowd at 80% accuracy and 2000 records whose truth is "positive"
    truth = {f"r{n}": "positive" for n in range(2000)}
    crowd = SimulatedWorkers(truth, accuracy=0.8, seed=3)
    answers = [crowd.answer({**TASK, "record_id": rid}, 3) for rid in truth]
    # Then the same record always gets the same answers, from three distinct workers
    assert crowd.answer({**TASK, "record_id": "r5"}, 3) == answers[5]
    assert all(len({worker for worker, _ in a}) == 3 for a in answers)
    # And about 80% of answers are right
    right = sum(label == "positive" for a in answers for _, label in a) / (3 * len(answers))
    assert 0.77 < right < 0.83


def test_answers_file_in_csv_or_json(tmp_path: Path) -> None:
    # Given the same answers as CSV and as JSON
    csv_file, json_file = tmp_path / "a.csv", tmp_path / "a.json"
    csv_file.write_text("record_id,label\nr1,positive\nr2,bogus\n")
    json_file.write_text('{"r1": "positive", "r2": "bogus"}')
    for path in (csv_file, json_file):
        reviewer = AnswersFile(path)
        # Then a covered record gets one answer, and labels outside the task's choices or missing records none
        assert reviewer.answer(TASK, 3) == [("local.answers-file", "positive")]
        assert reviewer.answer({**TASK, "record_id": "r2"}, 1) == []
        assert reviewer.answer({**TASK, "record_id": "r3"}, 1) == []


def test_answers_file_without_the_columns_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("id,answer\nr1,positive\n")
    with pytest.raises(ValueError, match="record_id,label"):
        AnswersFile(path)


def test_terminal_reviewer_takes_a_number_or_a_label_and_skips_on_enter() -> None:
    # Given a person who first types nonsense, then "2"
    replies = iter(["maybe", "2", "negative", ""])
    said: list[str] = []
    reviewer = TerminalReviewer(ask=lambda _: next(replies), say=said.append)
    # When three tasks are shown
    first, second, third = (reviewer.answer(TASK, 1) for _ in range(3))
    # Then the answers are positive, negative and none, and the bad reply was explained
    assert first == [("local.terminal", "positive")] and second == [("local.terminal", "negative")] and third == []
    assert any("pick 1-2" in line for line in said) and any("works well" in line for line in said)


def test_the_crowd_size_per_record_can_be_set_for_local_runs() -> None:
    # Given a crowd told to send 5 workers per record, whatever the job asks for
    crowd = SimulatedWorkers({"r1": "positive"}, workers_per_task=5)
    # Then each task gets 5 distinct workers, and Ground Truth's 1-9 limit holds
    assert len({worker for worker, _ in crowd.answer(TASK, 1)}) == 5
    with pytest.raises(ValueError, match="between 1 and 9"):
        SimulatedWorkers({}, workers_per_task=10)


def test_simulated_workers_never_make_up_a_label() -> None:
    # Given a crowd that knows the label of r1 only
    crowd = SimulatedWorkers({"r1": "positive"}, accuracy=1.0)
    # When it is shown r1 and a record whose label nobody knows
    known = crowd.answer(TASK, 3)
    unknown = crowd.answer({**TASK, "record_id": "r2"}, 3)
    # Then r1 gets answers and r2 none: it stays unlabeled instead of getting a random label
    assert {label for _, label in known} == {"positive"} and unknown == []
