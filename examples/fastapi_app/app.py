"""FastAPI quick start: router layer from the route template, pipe layer around the handler."""

import argparse
import logging
from pathlib import Path

import gatescope
import uvicorn
from fastapi import FastAPI

telemetry = gatescope.Telemetry.from_file(Path(__file__).with_name("krakend.json"))
api = FastAPI()


@api.get("/users/{user_id}")
async def read_user(user_id: int) -> dict[str, int]:
    async with telemetry.pipe("/users/{user_id}"):
        return {"user_id": user_id}


app = telemetry.asgi(api)  # span and metrics named "/users/{user_id}", never the raw path

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8000)
    logging.basicConfig(level=logging.INFO)
    uvicorn.run(app, host="127.0.0.1", port=parser.parse_args().port, log_level="warning")
    telemetry.shutdown(5)
