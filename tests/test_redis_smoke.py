import redis


def test_redis_urls_are_clean_and_separate(redis_urls):
    s = redis.Redis.from_url(redis_urls.settings)
    d = redis.Redis.from_url(redis_urls.data)
    try:
        assert s.dbsize() == 0 and d.dbsize() == 0
        s.set("a", 1)
        assert d.get("a") is None
        assert d.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
        assert s.config_get("appendonly")["appendonly"] == "yes"
    finally:
        s.close()
        d.close()
