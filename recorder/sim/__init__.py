"""The embedded Kiwoom-compatible venue (REST and WebSocket) and its synthetic market.

Used by ``recorder sim``, ``replay --serve``, the demo and the tests; never by a production capture.
"""
