"""Jobs for the replay tests: rows from a JSON document at REPLAY_URL, as they are."""
