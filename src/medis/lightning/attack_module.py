"""The attack as a LightningModule: ``trainer.test`` runs MedIS over a data set's test split.

Each test batch holds images at their ORIGINAL size. For every configured target kind the module
builds the references (ground truths when untargeted; otherwise targets from
:mod:`medis.attacks.targets`), skips and counts images whose target equals their ground truth,
runs :func:`medis.attacks.engine.run_attack` with all losses at once, and streams the records to
``<output_dir>/records.csv`` as each batch finishes (complete rows only). With ``resume=True``
records already on disk are kept and their (image, target, loss) work is not redone.

Random and most-similar targets are drawn from the test set's own masks (kept at most
``pool_size`` pixels a side): random targets are seeded per image (clean mode) or one per loss for
the whole set (paper mode, as the MedIS notebooks); the most-similar table is computed once.

With several processes (DDP) every rank streams to its own ``records.rank<r>.csv`` and, at the end
of the test epoch, rank 0 merges them into ``records.csv`` with one record per (image, target,
loss): the distributed sampler repeats samples to pad the last batch (:mod:`medis.reporting.shards`).
Callbacks that need all the records (fusion, gallery) therefore run in ``on_test_end``.

For the first ``gallery_size`` images of every target the module also keeps, in ``gallery``, the
clean and adversarial images and predictions of the loss parallel fusion would pick (the
successful loss with the fewest steps; when none succeeded, the loss with the best final metric),
for :class:`medis.lightning.gallery.AdversarialGallery`.

Before attacking, rank 0 audits the test split's masks (:mod:`medis.data.audit`) and checks the
victim on the first batch (:mod:`medis.attacks.sanity`: stochastic output, gradient masking, clean
failures); findings are warned once and written with the measured values to ``checks.json``.

The trainer must run with ``inference_mode=False``: the engine enables gradients itself.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Sequence

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_warn

from medis.attacks.engine import AttackConfig, AttackResult, run_attack
from medis.attacks.sanity import check_victim
from medis.data.audit import MaskAudit
from medis.data.io import read_mask_levels
from medis.attacks.targets import most_similar_index, resize_mask, same_as_ground_truth, similarity_table
from medis.attacks.fastpath import auto_max_batch, fast_victim
from medis.attacks.plan import Member, attack_members, run_options
from medis.errors import ConfigError
from medis.lightning.heap import release_free_heap
from medis.losses import build_loss
from medis.models.frontend import Victim
from medis.reporting import RecordWriter, completed_keys, read_records
from medis.reporting.atomic import atomic_write_text
from medis.reporting.shards import RECORDS_NAME, merge_shards, shard_path, stale_shards

TRIM_EVERY = 1
"""Batches between two ``malloc_trim`` calls: every batch (a trim costs milliseconds; every 16th
batch left RSS growing 8% over the second half of bench/attack_memory.py, every batch 2.6%)."""
TARGETS = ("untargeted", "random", "most_similar", "white", "black", "inverted")


class AttackModule(pl.LightningModule):
    """MedIS over a test set (see the module docstring).

    Args:
        victim: the differentiable victim (``conf/model``).
        attack: the ``attack`` config node as a dict (mode, steps, update, step_size, eps, ...; an
            ensemble's ``members``; see :mod:`medis.attacks.plan`).
        losses: loss names (``conf/losses``), for attacks without their own.
        targets: target kinds, ``untargeted`` included or not (``conf/target``).
        output_dir: where ``records.csv`` goes.
        resume: keep the records on disk and skip their work.
        seed: random targets and random starts.
        pool_size: longest side of the masks kept for random and most-similar targets.
        gallery_size: images per target kept for the gallery (0: none).
        transfer_victim: another victim on which every adversarial image is also judged (black-box
            transfer; ``transfer_metric``/``transfer_success`` in the records).
    """

    def __init__(self, victim: Victim, attack: dict[str, Any], losses: Sequence[str], targets: Sequence[str],
                 output_dir: str, resume: bool = False, seed: int = 0, pool_size: int = 256,
                 gallery_size: int = 4, transfer_victim: Victim | None = None) -> None:
        super().__init__()
        bad = [kind for kind in targets if kind not in TARGETS]
        if bad or not targets:
            raise ConfigError(f"unknown target(s) {bad or '[]'}; valid: {', '.join(TARGETS)}")
        self.options = run_options(attack)
        self.members = attack_members(attack, losses, seed)
        self.victim = fast_victim(victim, channels_last=self.options.channels_last, compile=self.options.compile,
                                  compile_mode=self.options.compile_mode, precision=self.options.precision)
        self.transfer_victim = transfer_victim
        self.losses = [label for member in self.members for label in member.labels]
        self.targets = list(targets)
        self.plans = {kind: [(member, member.config(kind != "untargeted", kind, seed)) for member in self.members]
                      for kind in self.targets}
        self.output_dir = Path(output_dir)
        self.resume = resume
        self.seed = seed
        self.pool_size = pool_size
        self.records: list[dict] = []
        self.gallery_size = gallery_size
        self.gallery: dict[str, list[dict]] = {kind: [] for kind in self.targets}
        self.checks: dict[str, dict] = {}
        self._skipped: dict[str, set[tuple[str, str]]] = {kind: set() for kind in self.targets}
        self._writer: RecordWriter | None = None
        self._done: set[tuple[str, str, str, str]] = set()
        self._pool: list[torch.Tensor] = []
        self._pool_index: dict[tuple[str, str], int] = {}
        self._similar: torch.Tensor | None = None

    # ------------------------------------------------------------------ set-up
    def on_test_start(self) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        merged = self.output_dir / RECORDS_NAME
        world, rank = self.trainer.world_size, self.global_rank
        path = merged if world == 1 else shard_path(self.output_dir, rank)
        if self.resume:
            if world == 1 and stale_shards(self.output_dir):
                merge_shards(self.output_dir)  # an interrupted multi-process run, resumed by one
            for source in [merged, *stale_shards(self.output_dir)]:
                if source.exists():
                    kept = read_records(source)
                    self._done |= completed_keys(kept)
                    if source == merged and world == 1:
                        self.records = kept
        else:
            self._discard_old_records(merged, path, rank)
        self._writer = RecordWriter(path)
        self._scan_test_masks()

    def _discard_old_records(self, merged: Path, own: Path, rank: int) -> None:
        """A fresh run: each rank deletes its own old file; rank 0 also the merged file and stale shards."""
        if own.exists():
            own.unlink()
        if rank == 0:
            for path in [merged, *stale_shards(self.output_dir)]:
                if path.exists() and path != own:
                    path.unlink()
        if self.trainer.world_size > 1:
            self.trainer.strategy.barrier("medis-records-clean")

    def _scan_test_masks(self) -> None:
        """One pass over the masks of the whole test split (targets come from the whole set, not
        this job's shard): the audit (noted by rank 0) and, for random and most-similar targets,
        the pool of downsampled masks and the most-similar table. Images are not read."""
        dataset = self.trainer.datamodule.dataset("test", sharded=False)
        audit, pooled = MaskAudit(), bool({"random", "most_similar"} & set(self.targets))
        for index, entry in enumerate(dataset.samples):
            mask = audit.add(entry.mask, read_mask_levels(entry.mask))
            if not pooled:
                continue
            mask = torch.from_numpy(mask).float()[None]
            scale = self.pool_size / max(mask.shape[-2:])
            if scale < 1:
                size = (max(1, round(mask.shape[-2] * scale)), max(1, round(mask.shape[-1] * scale)))
                mask = resize_mask(mask, size)
            self._pool.append(mask)
            self._pool_index[(dataset.dataset_name or entry.dataset, entry.id)] = index
        if "most_similar" in self.targets:
            self._similar = most_similar_index(similarity_table(self._pool))
        if self.global_rank == 0:
            self._note("masks", audit.as_dict())

    def _draw(self, stream: int) -> int:
        """Pool index of a random target from its own seeded stream, so that draws do not depend
        on batching: stream = the image's position in the test set (clean mode), or 10⁹ + the loss's
        position (paper mode: one target per loss for the whole set, as the notebooks draw)."""
        generator = torch.Generator().manual_seed(self.seed * 7919 + stream)
        return int(torch.randint(len(self._pool), (1,), generator=generator))

    def _references(self, kind: str, masks: list[torch.Tensor], keys: list[tuple[str, str]]):
        """Targets for the images of a batch (a list, or ``{loss: list}`` for the paper's random targets)."""
        if kind == "untargeted":
            return masks
        if kind == "white":
            return [torch.ones_like(m) for m in masks]
        if kind == "black":
            return [torch.zeros_like(m) for m in masks]
        if kind == "inverted":
            return [1 - m for m in masks]

        def from_pool(index: int, like: torch.Tensor) -> torch.Tensor:
            return resize_mask(self._pool[index], tuple(like.shape[-2:])).to(like)

        indices = [self._pool_index[key] for key in keys]
        if kind == "most_similar":
            return [from_pool(int(self._similar[i]), m) for i, m in zip(indices, masks)]
        if self.plans[kind][0][1].mode == "paper":
            return {loss: [from_pool(self._draw(10**9 + k), m) for m in masks] for k, loss in enumerate(self.losses)}
        return [from_pool(self._draw(i), m) for i, m in zip(indices, masks)]

    # ------------------------------------------------------------------ the attack
    def _note(self, name: str, findings: dict) -> None:
        """Keep a check's findings for ``checks.json`` and warn each of its warnings once."""
        self.checks[name] = findings
        for message in findings.get("warnings", []):
            rank_zero_warn(f"medis check ({name}): {message}")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        images = list(batch["image"])
        masks = list(batch["mask"])
        if "victim" not in self.checks and self.global_rank == 0:
            self._note("victim", check_victim(self.victim, images[:4], masks[:4]).as_dict())
        for dataset in dict.fromkeys(batch["dataset"]):
            rows = [i for i, name in enumerate(batch["dataset"]) if name == dataset]
            for kind in self.targets:
                self._attack_group(kind, dataset, [images[i] for i in rows], [masks[i] for i in rows],
                                   [batch["id"][i] for i in rows])

    def _attack_group(self, kind: str, dataset: str, images: list[torch.Tensor], masks: list[torch.Tensor],
                      ids: list[str]) -> None:
        keys = [(dataset, image_id) for image_id in ids]
        references = self._references(kind, masks, keys)
        keep = list(range(len(ids)))
        if kind != "untargeted" and not isinstance(references, dict):  # per-loss targets: not skipped
            equal = same_as_ground_truth(references, masks)
            self._skipped[kind] |= {keys[i] for i in range(len(ids)) if bool(equal[i])}
            keep = [i for i in keep if not bool(equal[i])]
        wanted = self.gallery_size - len(self.gallery[kind])
        result = AttackResult(records=[])
        for member, config in self.plans[kind]:
            result.extend(self._attack_member(member, config, wanted > 0, dataset, images, references, ids, keep))
        self.records.extend(result.records)
        assert self._writer is not None
        self._writer.append(result.records)
        kept = [i for i in keep if any(r["image_id"] == ids[i] for r in result.records)]
        if wanted > 0 and kept:
            pick = (lambda seq: [seq[i] for i in kept])
            reference = {k: pick(v) for k, v in references.items()} if isinstance(references, dict) else pick(references)
            self._keep_for_gallery(kind, dataset, pick(images), pick(masks), reference, pick(ids), result, wanted)

    def _attack_member(self, member: Member, config: AttackConfig, keep_images: bool, dataset: str, images: list[torch.Tensor],
                       references, ids: list[str], keep: list[int]) -> AttackResult:
        """One attack of the plan on the images of ``keep`` it has not finished (resume)."""
        kind = config.kind
        todo = [i for i in keep if any((dataset, ids[i], kind, label) not in self._done for label in member.labels)]
        if not todo:
            return AttackResult(records=[])
        pick = (lambda seq: [seq[i] for i in todo])
        if isinstance(references, dict):
            reference = {label: pick(references[label]) for label in member.labels}
        else:
            reference = pick(references)
        loss_fns = {member.label(loss): build_loss(loss, config.mode) for loss in member.losses}
        if self.options.auto_max_batch:
            largest = max((image.shape for image in pick(images)), key=lambda shape: shape[-1] * shape[-2])
            config = dataclasses.replace(config, max_batch=auto_max_batch(self.victim, loss_fns, tuple(largest),
                                                                          self.device))
        if keep_images:
            config = dataclasses.replace(config, keep_images=True)
        return run_attack(self.victim, pick(images), reference, loss_fns, config, pick(ids), dataset,
                          transfer_to=self.transfer_victim)

    @property
    def skipped(self) -> dict[str, int]:
        """Images skipped per target kind because their target equals their ground truth (all ranks
        after the test epoch)."""
        return {kind: len(keys) for kind, keys in self._skipped.items()}

    # ------------------------------------------------------------------ gallery
    def _keep_for_gallery(self, kind: str, dataset: str, images: list[torch.Tensor], masks: list[torch.Tensor],
                          references, ids: list[str], result, wanted: int) -> None:
        """Keep up to ``wanted`` gallery entries (see the module docstring) from one attacked group."""
        targeted = kind != "untargeted"
        for i, image_id in enumerate(ids[:wanted]):
            mine = [r for r in result.records if r["image_id"] == image_id]
            won = [r for r in mine if r["success"]]
            sign = -1.0 if targeted else 1.0
            if won:
                best = min(won, key=lambda r: (r["steps"], sign * r["metric"], r["loss"]))
            else:
                best = min(mine, key=lambda r: (sign * r["metric"], r["loss"]))
            adversarial = result.adversarial[(image_id, best["loss"])]
            reference = references[best["loss"]][i] if isinstance(references, dict) else references[i]
            with torch.no_grad():
                probs = self.victim(torch.stack([images[i], adversarial.to(images[i])])).prob.cpu()
            self.gallery[kind].append({
                "dataset": dataset, "id": image_id, "loss": best["loss"], "success": bool(best["success"]),
                "steps": best["steps"], "image": images[i].detach().cpu(), "adversarial": adversarial,
                "mask": masks[i].detach().cpu(), "reference": reference.detach().cpu(),
                "clean_prob": probs[0], "adversarial_prob": probs[1]})

    def on_test_batch_end(self, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Every ``TRIM_EVERY`` batches, hand freed heap back to the system (:mod:`medis.lightning.heap`)."""
        if (batch_idx + 1) % TRIM_EVERY == 0:
            release_free_heap()

    def on_test_epoch_end(self) -> None:
        """Close this rank's record file; with several ranks, rank 0 merges the shards."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self.global_rank == 0 and self.checks:
            atomic_write_text(self.output_dir / "checks.json", json.dumps(self.checks, indent=1) + "\n")
        if self.trainer.world_size > 1:
            self.trainer.strategy.barrier("medis-records-merge")
            gathered: list = [None] * self.trainer.world_size
            torch.distributed.all_gather_object(gathered, self._skipped)
            for other in gathered:
                for kind, keys in other.items():
                    self._skipped[kind] |= keys
            if self.global_rank == 0:
                self.records = merge_shards(self.output_dir)
            self.trainer.strategy.barrier("medis-records-merged")

    def configure_optimizers(self) -> None:
        return None
