"""Django quick start: `route_middleware` names requests by their URL pattern (WSGI or ASGI)."""

import argparse
import logging
from pathlib import Path

import django
import gatescope
from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.urls import include, path

settings.configure(
    DEBUG=False, ALLOWED_HOSTS=["127.0.0.1", "localhost"], ROOT_URLCONF=__name__,
    SECRET_KEY="example-only", MIDDLEWARE=["gatescope.router.django.route_middleware"],
)
django.setup()
telemetry = gatescope.Telemetry.from_file(Path(__file__).with_name("krakend.json"))


def read_user(request: HttpRequest, user_id: int) -> JsonResponse:
    with telemetry.pipe("/api/users/{user_id}"):
        return JsonResponse({"user_id": user_id})


urlpatterns = [path("api/", include([path("users/<int:user_id>", read_user)]))]

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--asgi", action="store_true", help="serve with uvicorn instead of WSGI")
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    if arguments.asgi:
        import uvicorn
        from django.core.asgi import get_asgi_application

        uvicorn.run(telemetry.asgi(get_asgi_application()), host="127.0.0.1",
                    port=arguments.port, log_level="warning")
    else:
        from django.core.wsgi import get_wsgi_application
        from werkzeug.serving import run_simple

        run_simple("127.0.0.1", arguments.port, telemetry.wsgi(get_wsgi_application()),
                   threaded=True)
    telemetry.shutdown(5)
