"""@task and @flow on instance, class and static methods."""

from __future__ import annotations

import asyncio
import pickle
from typing import Any

from taskrunners import Task, flow, task
from taskrunners.testing.parity_tasks import Account
from taskrunners_threads import ThreadPoolTaskRunner

RUNNER = ThreadPoolTaskRunner(max_workers=4)


class Shop:
    def __init__(self, rate: int) -> None:
        self.rate = rate

    @task
    def price(self, n: int) -> int:
        return self.rate * n

    @task
    async def price_async(self, n: int) -> int:
        return self.rate * n

    @classmethod
    @task
    def named(cls, n: int) -> str:  # classmethod over task
        return f"{cls.__name__}{n}"

    @task
    @classmethod
    def named_too(cls, n: int) -> str:  # task over classmethod
        return f"{cls.__name__}{n}"

    @staticmethod
    @task
    def plus(a: int, b: int) -> int:
        return a + b

    @task
    @staticmethod
    def times(a: int, b: int) -> int:
        return a * b

    @flow(task_runner=RUNNER)
    def order(self, counts: list[int]) -> list[int]:
        return self.price.map(counts).result()

    @flow(task_runner=RUNNER)
    async def order_async(self, n: int) -> int:
        return await self.price_async.submit(n)


class Outlet(Shop):
    pass


def test_calls_through_an_instance_and_the_class() -> None:
    shop = Shop(3)
    assert shop.price(2) == 6 and Shop.price(shop, 2) == 6
    assert shop.price_async(2) == 6  # an async task called where no loop runs
    assert shop.named(1) == "Shop1" and Shop.named(1) == "Shop1" and Outlet.named(1) == "Outlet1"
    assert shop.named_too(1) == "Shop1" and Outlet.named_too(2) == "Outlet2"
    assert shop.plus(1, 2) == 3 and Shop.times(2, 3) == 6
    assert isinstance(shop.price, Task) and shop.price.name == "price"


def test_submit_and_map_through_an_instance_and_the_class() -> None:
    shop = Shop(2)

    @flow(task_runner=RUNNER)
    def body() -> Any:
        return (
            shop.price.submit(5).result(),
            Shop.price.submit(shop, 6).result(),
            shop.price.map([1, 2, 3]).result(),
            Outlet.named_too.submit(4).result(),
            Shop.times.map([1, 2], 10).result(),
        )

    assert body() == (10, 12, [2, 4, 6], "Outlet4", [10, 20])


def test_methods_as_flows() -> None:
    shop = Shop(4)
    assert shop.order([1, 2]) == [4, 8]
    assert Shop.order(shop, [3]) == [12]
    assert asyncio.run(shop.order_async(2)) == 8


def test_binding_leaves_the_task_unbound() -> None:
    shop = Shop(1)
    shop.price.submit  # noqa: B018 - binding must not change the class's task
    assert Shop.price(shop, 3) == 3
    assert Shop.__dict__["price"]._bound is not shop


def test_self_is_not_searched_for_futures_nor_mapped() -> None:
    class Items(list):  # iterable: `map` must still pass it whole
        @task
        def size(self, extra: int) -> int:
            return len(self) + extra

    items = Items([1, 2, 3])

    @flow(task_runner=RUNNER)
    def body() -> Any:
        return items.size.map([10, 20]).result()

    assert body() == [13, 23]


def test_mapping_through_the_class_maps_over_instances_given_explicitly() -> None:
    shops = [Shop(1), Shop(10)]

    @flow(task_runner=RUNNER)
    def body() -> Any:
        return Shop.price.map(shops, 2).result()

    assert body() == [2, 20]


def test_a_method_task_pickles_by_reference_and_a_bound_one_stays_bound() -> None:
    assert pickle.loads(pickle.dumps(Account.add)) is Account.__dict__["add"]
    assert pickle.loads(pickle.dumps(Account.double)) is Account.__dict__["double"]
    assert pickle.loads(pickle.dumps(Account.describe))(1) == "Account:1"
    assert pickle.loads(pickle.dumps(Account(5).add))(1) == 6
