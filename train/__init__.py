"""Training side of rfm (needs the [train] extra): the RFM and its baselines in torch."""
