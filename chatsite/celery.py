"""The Celery application: configured from Django settings (CELERY_* names).

A task sent while serving a web request carries that request's id in its headers; the
worker logs the task's lines under it (see chatsite.logs).
"""

import os

from celery import Celery
from celery.signals import before_task_publish, task_postrun, task_prerun

from chatsite.logs import NO_REQUEST, request_id_var

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")

app = Celery("chatsite")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@before_task_publish.connect
def _send_request_id(headers: dict, **kwargs) -> None:
    request_id = request_id_var.get()
    if request_id != NO_REQUEST:
        headers.setdefault("request_id", request_id)


@task_prerun.connect
def _adopt_request_id(task, **kwargs) -> None:
    request_id_var.set(getattr(task.request, "request_id", None) or NO_REQUEST)


@task_postrun.connect
def _drop_request_id(**kwargs) -> None:
    # Worker threads run one task after another: the next one must not inherit this id.
    request_id_var.set(NO_REQUEST)
