"""Model definitions and the datasets they train on (X/O glyphs, EMNIST, the course's pickle,
Fashion-MNIST, MNIST). Import ``k210.models.datasets`` for the loaders."""
