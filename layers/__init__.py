"""The Faster R-CNN layers of pyfrcnn, loaded by the engine as a plugin."""
