"""The local review backends: simulated workers, an answers file, a person at the terminal."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from labelflow_local.review import (
    AnswersFile,
    MainThreadPrompt,
    NoReviewers,
    SimulatedWorkers,
    TerminalReviewer,
    task_fingerprint,
)

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


def test_an_answers_file_with_a_label_outside_the_spec_is_refused_when_given(tmp_path: Path) -> None:
    # Given an answers file whose r2 label is not one of the spec's
    path = tmp_path / "a.csv"
    path.write_text("record_id,label\nr1,positive\nr2,bogus\n")
    # When it is loaded with the spec's labels / Then it is refused at once, naming the record and the label
    with pytest.raises(ValueError, match=r"not in the spec \(negative, positive\) for records r2 \('bogus'\)"):
        AnswersFile(path, ["negative", "positive"])


def test_each_backend_says_who_reviewed() -> None:
    # Given the four local backends
    crowd = SimulatedWorkers({"r1": "positive"}, accuracy=0.8, seed=11)
    crowd.answer(TASK, 3)
    # Then simulated workers give their seed, accuracy and workers per record; nobody is "none"
    lineage = crowd.lineage()
    assert (lineage.backend, lineage.seed, lineage.simulated_accuracy, lineage.workers_per_record) == (
        "simulated",
        11,
        0.8,
        3,
    )
    assert NoReviewers().answer(TASK, 3) == [] and NoReviewers().lineage().backend == "none"
    assert TerminalReviewer(ask=input, say=print).lineage().backend == "terminal"


def tasks(count: int) -> list[dict[str, object]]:
    return [{**TASK, "record_id": f"r{n}", "text": f"review {n}"} for n in range(1, count + 1)]


def replies(*lines: str | type[BaseException]) -> Callable[[str], str]:
    """A person typing `lines` in turn; an exception class stands for Ctrl-C or Ctrl-D, and the end is Ctrl-D."""
    queue: Iterator[str | type[BaseException]] = iter(lines)

    def ask(prompt: str) -> str:
        reply = next(queue, EOFError)
        if isinstance(reply, str):
            return reply
        raise reply()

    return ask


def review(reviewer: TerminalReviewer, items: list[dict[str, object]]) -> list[list[tuple[str, str]]]:
    reviewer.begin(len(items))
    return [reviewer.answer(item, 1) for item in items]


def test_the_terminal_shows_progress_refuses_unknown_labels_and_skips() -> None:
    # Given a person who types a label that is not in the spec, then 2, then skips
    said: list[str] = []
    reviewer = TerminalReviewer(ask=replies("neutral", "2", ""), say=said.append)
    # When two records are reviewed
    answers = review(reviewer, tasks(2))
    # Then the unknown label was refused when typed (asked again), r1 is positive and r2 skipped
    assert answers == [[("local.terminal", "positive")], []]
    assert any("'neutral' is not a label" in line for line in said)
    # And each record showed where the person is
    assert any("[1 of 2, 0 answered] r1" in line for line in said)
    assert any("[2 of 2, 1 answered] r2" in line for line in said)


@pytest.mark.parametrize(("stop", "why"), [("q", "stopped"), (KeyboardInterrupt, "interrupted"), (EOFError, "end")])
def test_quit_ctrl_c_or_ctrl_d_keep_the_answers_and_a_later_run_resumes(
    tmp_path: Path, stop: str | type[BaseException], why: str
) -> None:
    # Given a person who answers r1 and r2, then stops (q, Ctrl-C or Ctrl-D) at r3 of 5
    saved = tmp_path / "review" / "reviews.terminal.jsonl"
    said: list[str] = []
    first = review(TerminalReviewer(ask=replies("1", "positive", stop), say=said.append, saved=saved), tasks(5))
    # Then r1 and r2 are answered, nothing more is asked, and the person is told the answers are kept
    assert first == [[("local.terminal", "negative")], [("local.terminal", "positive")], [], [], []]
    assert any(line.strip().startswith(why) and "2 of 5 answered" in line and str(saved) in line for line in said)

    # When the same records come again (a new run) and the person answers the other three
    asked: list[str] = []
    later = TerminalReviewer(ask=replies("2", "2", "1"), say=asked.append, saved=saved)
    second = review(later, tasks(5))
    # Then r1 and r2 keep their earlier answers without being asked again, and r3..r5 get the new ones
    assert [a[0][1] for a in second] == ["negative", "positive", "positive", "positive", "negative"]
    assert not any("] r1" in line or "] r2" in line for line in asked)
    assert any("[3 of 5, 2 answered] r3" in line for line in asked)


def test_a_saved_answer_is_reused_only_for_the_record_as_it_was_shown(tmp_path: Path) -> None:
    # Given an answer saved for r1 as it read then
    saved = tmp_path / "answers.jsonl"
    review(TerminalReviewer(ask=replies("2"), say=lambda _: None, saved=saved), tasks(1))
    # When r1 comes back with other content (another file reusing the id)
    changed = {**tasks(1)[0], "text": "it broke"}
    assert task_fingerprint(changed) != task_fingerprint(tasks(1)[0])
    # Then the person is asked again
    again = review(TerminalReviewer(ask=replies("1"), say=lambda _: None, saved=saved), [changed])
    assert again == [[("local.terminal", "negative")]]


def test_a_line_cut_short_by_a_crash_is_asked_again(tmp_path: Path) -> None:
    # Given a saved-answers file whose last line was cut short
    saved = tmp_path / "answers.jsonl"
    review(TerminalReviewer(ask=replies("2"), say=lambda _: None, saved=saved), tasks(1))
    with saved.open("a") as handle:
        handle.write('{"record_id": "r2", "finger')
    # When r1 and r2 come again / Then r1 is reused and r2 asked
    again = review(TerminalReviewer(ask=replies("1"), say=lambda _: None, saved=saved), tasks(2))
    assert again == [[("local.terminal", "positive")], [("local.terminal", "negative")]]
    # And r2's answer was saved on a line of its own: a third run asks nothing
    third = review(TerminalReviewer(ask=replies(), say=lambda _: None, saved=saved), tasks(2))
    assert third == again


def test_the_main_thread_answers_a_reviewer_on_another_thread_and_passes_ctrl_c_on() -> None:
    # Given a reviewer that runs on a worker thread (as under the state machine) and a person who answers
    # the first record, then presses Ctrl-C; input() runs on the main thread, the only one Ctrl-C reaches
    readers: list[str] = []

    def read(prompt: str) -> str:
        readers.append(threading.current_thread().name)
        if len(readers) > 1:
            raise KeyboardInterrupt
        return "2"

    prompt = MainThreadPrompt(read)
    reviewer = TerminalReviewer(ask=prompt.ask, say=lambda _: None)
    # When the review runs through the prompt
    answers = prompt.run(lambda: review(reviewer, tasks(3)))
    # Then the replies were read on the main thread, the Ctrl-C stopped the review cleanly, and the work's
    # result came back
    assert readers == [threading.main_thread().name] * 2
    assert answers == [[("local.terminal", "positive")], [], []]


def test_the_work_s_error_reaches_the_main_thread() -> None:
    def fail() -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        MainThreadPrompt(lambda _: "").run(fail)
