"""gunicorn settings from the environment (declared in pipeline/settings.py, ``Server``): PORT (9090),
HOST (0.0.0.0), WORKERS (1), THREADS (32), LOG_LEVEL (info), TIMEOUT (300 s: silence before a worker is
restarted), PRELOAD_MODELS (1), GUNICORN_CONTROL_SOCKET (0).

    gunicorn -c python:backends.gunicorn_conf backends._wsgi:app

Every request holds one thread for as long as it lasts: a /predict also while it downloads its
images and while it waits for a model slot, so THREADS bounds how many /predict a worker takes in
(THREADS - 2, see backends/base/worker.py), not how many compute at once (PREDICT_CONCURRENCY).
"""
from pipeline.settings import Server

_server = Server.read()
bind = f"{_server.host}:{_server.port}"
workers = _server.workers
threads = _server.threads
worker_class = "gthread"
timeout = _server.timeout
graceful_timeout = 30
# no runtime control socket (gunicorn 23+ puts one in ~/.gunicorn, shared by every instance)
control_socket_disable = not _server.control_socket
loglevel = _server.log_level.lower()
accesslog = "-"
errorlog = "-"
# the access log line never includes headers (tokens, basic auth)
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms'


def post_worker_init(worker):
    """Give the worker its share of the physical cores for torch, tell the app how many threads it has (it
    keeps some free of /predict) and load the models in the background, so a new worker answers /health
    ("loading") at once."""
    from backends.base.api import on_worker_start
    from pipeline.hardware import share_cores
    share_cores(worker.cfg.workers)  # workers run models side by side: each gets its share of the cores
    on_worker_start(worker.wsgi, threads=worker.cfg.threads, warm_up=Server.read().preload_models)
