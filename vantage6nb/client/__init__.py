"""The researcher client: ``Client`` (REST + socket.io events), ``Task``, DataFrames out."""

from ._client import Client, TotpEnrolmentWarning
from ._codec import Codec, PlainCodec
from ._events import EventStream
from ._frames import export, read_export
from ._http import TotpRequired
from ._outcome import NodeOfflineWarning, UnverifiedResultWarning
from ._runs import RunBook
from ._session import Session
from ._state import ResearcherState, StateDirWarning
from ._task import Task
from ._task_api import TaskAPI

__all__ = [
    "Client",
    "Codec",
    "EventStream",
    "NodeOfflineWarning",
    "PlainCodec",
    "ResearcherState",
    "RunBook",
    "Session",
    "StateDirWarning",
    "Task",
    "TaskAPI",
    "TotpEnrolmentWarning",
    "TotpRequired",
    "UnverifiedResultWarning",
    "export",
    "read_export",
]
