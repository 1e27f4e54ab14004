"""kiwoom-recorder: a tick recorder and historical store for Kiwoom's real-time WebSocket feed."""

__version__ = "0.1.0"
