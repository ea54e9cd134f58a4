# Temporary alias while the runner packages move to the public name; removed before landing.
from .tasks import *  # noqa: F403
from .tasks import SIGNAL_TIMEOUT, ConformanceError  # noqa: F401
