"""The researcher client: ``Client`` (REST + socket.io events), ``Task``, DataFrames out."""

from ._client import Client
from ._codec import Codec, PlainCodec
from ._events import EventStream
from ._runs import RunBook
from ._session import Session
from ._task import Task
from ._task_api import TaskAPI

__all__ = ["Client", "Codec", "EventStream", "PlainCodec", "RunBook", "Session", "Task", "TaskAPI"]
