"""rtproxy's recorder as a mitmproxy script.

    mitmdump -s addons/realtime_recorder.py --set rtrec_dir=recordings
    mitmweb  -s addons/realtime_recorder.py --set rtrec_keep_messages=true

Every WebSocket session becomes one .rtrec file in ``rtrec_dir``.
"""

import sys
from pathlib import Path

try:
    from rtproxy.record.addon import RealtimeRecorder
except ImportError:  # running from a checkout without `pip install`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from rtproxy.record.addon import RealtimeRecorder

addons = [RealtimeRecorder()]
