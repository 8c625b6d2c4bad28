"""Manipulating a trained model without changing its behaviour: the detector, its training, the fooling
circuit (paper 2.1) and silent units (paper 2.2)."""
