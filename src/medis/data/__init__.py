"""Data: real folder layouts, image/mask reading, datasets, transforms, the Lightning data module,
and synthetic dermoscopy/endoscopy stand-ins written in the real layouts."""
