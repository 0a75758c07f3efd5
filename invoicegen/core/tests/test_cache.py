"""The project's Redis cache: every call of a process shares one client, which outlives a
restart of Redis, and a forked process (a Celery worker's child) gets connections of its own."""

import os

import pytest
from redis.exceptions import RedisError

from invoicegen.core.cache import RedisCache


def redis_cache(url: str | list[str]) -> RedisCache:
    return RedisCache(url, {"OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1}})


def test_every_call_shares_one_client(redis_server):
    cache = redis_cache(redis_server.url())
    cache.set("key", 1)

    assert cache.get("key") == 1
    assert cache._cache.get_client() is cache._cache.get_client(write=True)


def test_a_restart_of_redis_fails_only_the_calls_made_while_it_is_down(redis_server):
    cache = redis_cache(redis_server.url())
    cache.set("key", 1)

    redis_server.kill()
    with pytest.raises(RedisError):
        cache.get("key")
    redis_server.start()

    cache.set("key", 2)
    assert cache.get("key") == 2


def test_a_forked_process_talks_over_connections_of_its_own(redis_server):
    cache = redis_cache(redis_server.url())
    cache.set_many({"parent": "parent's", "child": "child's"})

    pid = os.fork()
    if pid == 0:  # the child: over a shared socket, one would read the other's answers
        ok = False
        try:
            ok = all(cache.get("child") == "child's" for _ in range(300))
        finally:
            os._exit(0 if ok else 1)
    parent_answers = {cache.get("parent") for _ in range(300)}
    _, status = os.waitpid(pid, 0)

    assert os.waitstatus_to_exitcode(status) == 0
    assert parent_answers == {"parent's"}


def test_reads_spread_over_the_replicas_each_through_its_own_client(redis_server):
    """With replicas (LOCATION a list: the first takes writes), a read draws one at random:
    its client must talk to that replica."""
    cache = redis_cache([redis_server.url(db) for db in range(4)])

    for _ in range(200):
        cache._cache.get_client()

    clients = cache._cache._clients
    assert {i: c.connection_pool.connection_kwargs["db"] for i, c in clients.items()} == {
        i: i for i in (1, 2, 3)
    }
