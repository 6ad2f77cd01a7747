"""Forge runs UI work on a main thread; the fake runs it in the calling thread."""


def run_and_wait_result(func, *args, **kwargs):
    return func(*args, **kwargs)


def async_run(func, *args, **kwargs):
    return func(*args, **kwargs)
