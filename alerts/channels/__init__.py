"""Notification channels behind one small interface (`Channel.send` returns a `Verdict`:
delivered, or failed and worth retrying or not). The fake lives in `testing.py`."""
