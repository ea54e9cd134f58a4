"""tags(...), quote(...), opaque(...), and Prefect keywords that taskrunners refuses."""

from __future__ import annotations

from typing import Any

import pytest
from taskrunners import flow, opaque, quote, tags, task
from taskrunners.lowlevel import current_task_run
from taskrunners.states import Completed
from taskrunners_threads import ThreadPoolTaskRunner

RUNNER = ThreadPoolTaskRunner(max_workers=2)


@task
def show(value: Any) -> Any:
    return value


@task(tags={"own"})
def my_tags() -> list[str]:
    info = current_task_run()
    return sorted(info.tags) if info else []


def test_tags_add_to_the_runs_submitted_inside_and_nest() -> None:
    @flow(task_runner=RUNNER)
    def body() -> Any:
        with tags("a") as outer:
            with tags("b") as inner:
                both = my_tags.submit()
            one = my_tags.submit()
        none = my_tags.submit()
        return sorted(outer), sorted(inner), both.result(), one.result(), none.result()

    assert body() == (["a"], ["a", "b"], ["a", "b", "own"], ["a", "own"], ["own"])
    with pytest.raises(TypeError, match="strings"), tags(1):  # type: ignore[arg-type]
        pass


@task
def kinds(value: Any) -> list[str]:
    return [type(item).__name__ for item in value]


def test_quote_passes_a_value_unsearched_and_opaque_resolves_only_the_top() -> None:
    @flow(task_runner=RUNNER)
    def body() -> Any:
        future = show.submit(1)
        future.wait()
        state = Completed(data=2)
        return (
            kinds.submit(quote([future, state])).result(),
            show.submit(opaque(future)).result(),
            kinds.submit(opaque([future, state])).result(),
            kinds.submit([future, state]).result(),  # without them: both resolved
            show.map(quote([1, 2])).result(),
            None,
        )

    quoted, opaque_top, opaque_inside, resolved, mapped, _ = body()
    assert quoted == ["Future", "State"] and opaque_inside == ["Future", "State"]
    assert opaque_top == 1 and resolved == ["int", "int"]
    assert mapped == [1, 2]


@pytest.mark.parametrize(
    ("decorator", "option", "anchor"),
    [
        (task, "cache_policy", "#results-caching-and-persistence"),
        (task, "persist_result", "#results-caching-and-persistence"),
        (task, "on_commit", "#options-that-need-a-server"),
        (flow, "validate_parameters", "#parameters-are-not-validated"),
        (flow, "result_storage", "#results-caching-and-persistence"),
    ],
)
def test_a_refused_prefect_option_names_itself_and_the_guide(
    decorator: Any, option: str, anchor: str
) -> None:
    with pytest.raises(TypeError) as info:
        decorator(**{option: True})
    message = str(info.value)
    assert f"{option}=" in message and "Prefect option" in message
    assert f"docs/migrating-from-prefect.md{anchor}" in message


def test_with_options_refuses_prefect_options_the_same_way() -> None:
    with pytest.raises(TypeError, match=r"cache_key_fn= is a Prefect option.*migrating-from-prefect"):
        show.with_options(cache_key_fn=lambda *a: "k")
    with pytest.raises(TypeError, match="unexpected keyword argument"):
        show.with_options(no_such_option=1)
