"""Batch inference over image files: `fastresnet predict` (cli.py) and its Python API.

    from fastresnet.predict import predict
    summary = predict("photos/", "resnet50", weights="resnet50.pth", out="labels.csv")

sources.py finds the images, model.py builds the model and loads its weights, images.py
decodes and preprocesses them (in worker processes where CPUs are free), run.py runs the
optimized model over them in batches and writes the rows (output.py); ray_engine.py does the
same with the model in a pool of Ray actors, and gives the rows as a Ray Dataset
(``predict_dataset``) for Ray Data's writers.
"""

from .run import PredictSummary, predict

__all__ = ["PredictSummary", "predict"]
