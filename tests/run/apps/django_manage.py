"""`python django_manage.py runserver --noreload PORT`: a one-file Django project, no k8sxray code."""

from __future__ import annotations

import os
import sys

import django
import requests
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import path


def hello(request: HttpRequest) -> HttpResponse:
    pid = str(os.getpid())
    requests.get(f"{os.environ['DOWNSTREAM']}/pid/{pid}", timeout=5)
    return HttpResponse(pid, headers={"X-Pid": pid})


urlpatterns = [path("", hello)]

if __name__ == "__main__":
    settings.configure(
        DEBUG=False,
        ALLOWED_HOSTS=["127.0.0.1"],
        ROOT_URLCONF=__name__,
        SECRET_KEY="test-only",
        MIDDLEWARE=[],
        INSTALLED_APPS=[],
    )
    django.setup()
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
