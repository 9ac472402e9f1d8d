"""Why an alert fired, computed exactly by leaving things out of the window's score (docs/explanations.md).

``explainer`` asks the model which frames raised the risk (each frame withheld in turn, positions unchanged)
and where in the most telling one (a grid of cells withheld in turn); ``regions`` turns those cells into a
peak and a box and leaves out a camera's static mask; ``worker`` runs explanations after the alert is
published, on a thread of their own, one at a time.
"""
