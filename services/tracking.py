"""Experiment tracking for ``--mode train`` (one Ray Train run, no Tune): rank 0 logs every epoch.

Sweeps use Tune's own logger callbacks (TensorBoard always; ``--callbacks mlflow,wandb`` add
``MLflowLoggerCallback`` / ``WandbLoggerCallback``, see ``services.sweeps``). A train run has no Tune
driver, so its rank-0 worker logs the same things itself: TensorBoard scalars in the run folder
(``tensorboard --logdir <storage>/<name>``), and an MLflow run / W&B run named after the experiment
with the hyperparameters as parameters. W&B honours ``WANDB_MODE=offline``; MLflow uses
``MLFLOW_TRACKING_URI`` or a SQLite store ``<storage>/<name>/mlflow.db``.
"""
from __future__ import annotations

import os

SCALARS = ("train_loss", "train_acc_noisy", "train_acc_clean", "memorized", "val_top1", "val_top1_clean",
           "test_top1", "test_top5", "lr", "logit_bias", "epoch_time")


class EpochLogger:
    """Logs per-epoch metrics to TensorBoard (and MLflow / W&B when asked). Local folders only."""

    def __init__(self, folder: str, name: str, hparams: dict, kinds: list[str] = ()):
        from torch.utils.tensorboard import SummaryWriter

        os.makedirs(folder, exist_ok=True)
        self.writer = SummaryWriter(log_dir=folder)
        self.hparams, self.mlflow, self.wandb = dict(hparams), None, None
        if "mlflow" in kinds:
            import mlflow

            mlflow.set_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///" + os.path.join(folder, "mlflow.db"))
            mlflow.set_experiment(name)
            self.mlflow = mlflow
            mlflow.start_run(run_name=name)
            mlflow.log_params(self.hparams)
        if "wandb" in kinds:
            import wandb

            self.wandb = wandb.init(project=os.environ.get("WANDB_PROJECT", "robustloss"), name=name, dir=folder,
                                    config=self.hparams, reinit=True)

    def log(self, metrics: dict) -> None:
        step = int(metrics["epoch"])
        values = {k: float(metrics[k]) for k in SCALARS if metrics.get(k) is not None}
        for k, v in values.items():
            self.writer.add_scalar(k, v, step)
        self.writer.flush()
        if self.mlflow is not None:
            self.mlflow.log_metrics(values, step=step)
        if self.wandb is not None:
            self.wandb.log(values, step=step)

    def close(self, final: dict | None = None) -> None:
        if final:
            self.writer.add_hparams({k: v for k, v in self.hparams.items() if isinstance(v, (int, float, str, bool))},
                                    {f"hparam/{k}": float(final[k]) for k in ("test_top1", "val_top1")
                                     if final.get(k) is not None},
                                    run_name=".")
        self.writer.close()
        if self.mlflow is not None:
            self.mlflow.end_run()
        if self.wandb is not None:
            self.wandb.finish()
