"""Django's Redis cache, with one client a connection pool: Django's own makes a new
`redis.Redis` (and fills its table of some 170 reply callbacks) for every cache call, which costs
more than the call's round trip to Redis. A `redis.Redis` is safe to share between threads, and
its pool starts over in a forked process."""

from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient as DjangoRedisCacheClient


class RedisCacheClient(DjangoRedisCacheClient):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._clients = {}  # connection pool index -> its client

    def get_client(self, key=None, *, write=False):
        index = self._get_connection_pool_index(write)  # a replica drawn at random for a read
        if index not in self._clients:
            if index not in self._pools:
                self._pools[index] = self._pool_class.from_url(
                    self._servers[index], **self._pool_options
                )
            self._clients[index] = self._client(connection_pool=self._pools[index])
        return self._clients[index]


class RedisCache(DjangoRedisCache):
    def __init__(self, server, params):
        super().__init__(server, params)
        self._class = RedisCacheClient
