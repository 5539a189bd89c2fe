"""moto's private hook points that local mode replaces: this fails first, and clearly, if moto moves them."""

from labelflow_local import engine


def test_moto_still_has_every_hook_point_local_mode_replaces() -> None:
    # Given the pinned moto version
    # When we look for the attributes local mode patches
    found = engine.hook_points()
    # Then every one of them is still there
    missing = [name for name, present in found.items() if not present]
    assert not missing, f"moto moved {missing}: update labelflow_local/engine.py and the pin in requirements-dev.txt"


def test_sagemaker_tasks_resolve_to_the_local_stand_in(cloud) -> None:
    # Given a local cloud (hooks installed)
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import state_task_factory

    # When the interpreter asks for the sagemaker service task
    task = state_task_factory.state_task_service_for("sagemaker")  # type: ignore[attr-defined]
    # Then it gets labelflow's stand-in, and other services are untouched
    assert isinstance(task, engine.LocalSageMakerTask)
    other = state_task_factory.state_task_service_for("sqs")  # type: ignore[attr-defined]
    assert not isinstance(other, engine.LocalSageMakerTask)
