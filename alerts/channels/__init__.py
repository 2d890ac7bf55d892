"""Notification channels behind one small interface (`Channel.send` returns a `Verdict`:
delivered, or failed and worth retrying or not). The fake lives in `testing.py`.

`base.py` holds the interface, the shared HTTP status table and secret scrubbing; one module
per provider (`platform`, `wecom`, `aliyun_sms`, `tencent_sms`, `webhook`, `wechat`) speaks its
real request shape; `fallback.py` wraps a primary and a fallback; `receivers.py` has local HTTP
servers that stand in for the providers (which cannot exist on a test machine) and check what
they are sent.
"""
