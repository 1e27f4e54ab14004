"""Talking to Kiwoom: REST (tokens, ka10099), one WebSocket session's life, credentials, retry rules.

Must not decode market data or write files other than reading credentials.
"""
