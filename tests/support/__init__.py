"""Helpers the tests share: real media, real servers on loopback, and the installed package's shape."""
