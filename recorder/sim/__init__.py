"""The embedded Kiwoom-compatible venue (REST and WebSocket) and its synthetic market.

Used by ``recorder sim``, ``replay --serve``, ``capture --sim``, the demo and the tests. Must not
be used by a production capture against Kiwoom, and must not import the recorder's own client,
capture or store: it is the other side of the wire.
"""
