"""The trail command line."""
