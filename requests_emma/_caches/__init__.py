"""The shared token caches: the ``TokenCache`` protocol, ``FileTokenCache`` and
``RedisTokenCache``. They store sealed entries as opaque bytes; what an entry says is the
core's business."""
