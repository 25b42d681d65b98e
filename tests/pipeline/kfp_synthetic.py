"""Tiny KFP pipelines for testing the local runner's failure handling (no future import: KFP reads the types)."""

from kfp import dsl


def _ok(marker: str) -> str:
    print(f"running {marker}")
    return marker


def _boom(marker: str) -> str:
    raise RuntimeError(f"synthetic failure in {marker}")


def _sleepy(seconds: float) -> None:
    import time

    time.sleep(seconds)


def _component(function):
    return dsl.component(base_image="python:3.11", install_kfp_package=False)(function)


def failing_pipeline():
    """A task that fails, an independent one that kfp.local would still run after it, and a conditional one.

    The dsl.If makes kfp.local use its control-flow orchestrator, as for the real pipeline; that one keeps
    launching independent tasks after a failure unless the launcher refuses."""
    ok, boom = _component(_ok), _component(_boom)

    @dsl.pipeline(name="synthetic")
    def synthetic():
        # kfp.local picks ready tasks in no fixed order: with three independent tasks, some usually come after
        # the failure, and the launcher must refuse them
        independent = [ok(marker=f"independent-{i}") for i in range(3)]
        first = boom(marker="first")
        with dsl.If(independent[0].output == "independent-0"):
            ok(marker="after-first").after(first)

    return synthetic


def sleepy_pipeline():
    sleepy = _component(_sleepy)

    @dsl.pipeline(name="sleepy")
    def pipeline():
        sleepy(seconds=60.0)

    return pipeline
