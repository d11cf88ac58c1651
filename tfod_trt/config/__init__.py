"""What a model says about itself: TFOD's pipeline.config, label maps, the image resizer."""
