"""From images to a trained model: augmentation, batch loaders for Keras and PyTorch,
pretrained backbones and their weights, cached frozen features, partial fine-tuning,
Keras and PyTorch training loops. Imports only `paths` and `data`."""
