"""The live engine: decks, beat-synced transitions, the audio callback, worker and recorder."""
