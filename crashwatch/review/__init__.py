"""Reviewing alerts: every event in an events folder gets a verdict, and verdicts become training data.

``catalogue`` lists the events an events folder holds (recorded event folders and held clips), ``verdicts``
keeps each event's verdicts with who gave them and when (SQLite beside the events, never inside their
evidence), ``export`` writes the reviewed events as a research dataset, their evidence copied with its proof.
The dashboard (its events API and page) and ``crashwatch review`` both go through them (docs/review.md).
"""
