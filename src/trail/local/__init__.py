"""The local default stack: Tansu broker subprocess, sink, chDB store, HTTP API."""
