"""Stored rows back out in time order: iterators, NDJSON and the recorded feed for the venue.

Must not decode differently from capture: frames go through :mod:`recorder.kiwoom`.
"""
