"""The attack as a LightningModule: ``trainer.test`` runs MedIS over a data set's test split.

Each test batch holds images at their ORIGINAL size. For every configured target kind the module
builds the references (ground truths when untargeted; otherwise targets from
:mod:`medis.attacks.targets`), skips and counts images whose target equals their ground truth,
runs :func:`medis.attacks.engine.run_attack` with all losses at once, and streams the records to
``<output_dir>/records.csv`` as each batch finishes (complete rows only). With ``resume=True``
records already on disk are kept and their (image, target, loss) work is not redone.

Random and most-similar targets come from a :class:`~medis.attacks.targets.TargetPool` of the test
set's own masks (kept at most ``pool_size`` pixels a side), the builder library callers use too:
random targets are seeded per image (clean mode) or one per loss for the whole set (paper mode, as
the MedIS notebooks); the most-similar table is computed once.

With several processes (DDP) every rank streams to its own ``records.rank<r>.csv`` and, at the end
of the test epoch, rank 0 merges them into ``records.csv`` with one record per (image, target,
loss): the distributed sampler repeats samples to pad the last batch (:mod:`medis.reporting.shards`).
Callbacks that need all the records (fusion, gallery) therefore run in ``on_test_end``.

For the first ``gallery_size`` images of every target the module also keeps, in ``gallery``, the
clean and adversarial images and predictions of the record parallel fusion picks
(:func:`medis.results.fusion.representative`), for :class:`medis.lightning.gallery_callback.AdversarialGallery`.

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
from pytorch_lightning.callbacks import RichProgressBar
from pytorch_lightning.utilities import rank_zero_warn

from medis.attacks.batching.loss_size import loss_shape
from medis.attacks.composition import Attack
from medis.attacks.engine import AttackResult, EngineOptions, run_attack
from medis.attacks.ensemble import Cascade, Ensemble
from medis.attacks.sanity import check_victim
from medis.attacks.targets import TargetPool, same_as_ground_truth, target_kind
from medis.data.audit import MaskAudit, refuse_tiny
from medis.data.io import read_mask_levels
from medis.errors import ConfigError
from medis.lightning.attack_progress import BatchProgress
from medis.losses import build_loss
from medis.models.frontend import Victim
from medis.models.wrappers import FLOAT64, FastPath, with_precision
from medis.reporting import RecordWriter, completed_keys, read_records
from medis.reporting.atomic import atomic_write_text
from medis.reporting.gallery import DISPLAY_SIDE, display_copy
from medis.reporting.shards import RECORDS_NAME, merge_shards, shard_path, stale_shards
from medis.results.fusion import representative
from medis.results.records import Record
from medis.runtime.cpu_allocator import release_free_heap
from medis.runtime.finish_line import FinishLine, strategy_timeout_s

TRIM_EVERY = 1
"""Batches between two ``malloc_trim`` calls (:mod:`medis.runtime.cpu_allocator`): every batch (a trim costs
milliseconds; every 16th batch left RSS growing 8% over the second half of bench/attack_memory.py,
every batch 2.6%)."""


class AttackModule(pl.LightningModule):
    """An attack (or an ensemble) over a test set (see the module docstring).

    Args:
        victim: the differentiable victim (``conf/model``).
        attack: an :class:`~medis.attacks.composition.Attack` or an :class:`~medis.attacks.ensemble.Ensemble`
            (``conf/attack``).
        losses: loss names (``conf/losses``), for attacks without their own.
        targets: target kinds of :data:`~medis.attacks.targets.TARGET_KINDS` (``conf/target``).
        output_dir: where ``records.csv`` goes.
        engine: how the engine runs (``conf/engine``); ``fast_path``: the victim's fast-path wrappers.
        resume: keep the records on disk and skip their work.
        seed: random targets and random starts.
        pool_size: longest side of the masks kept for random and most-similar targets.
        gallery_size: images per target kept for the gallery (0: none).
        transfer_victim: another victim on which every adversarial image is also judged (black-box
            transfer; ``transfer_metric``/``transfer_success`` in the records), at the attacked victim's
            precision (``fast_path.precision``: the real-pipeline and transfer verdicts run in the
            precision of the verdicts they are compared with).
    """

    def __init__(self, victim: Victim, attack: Attack | Ensemble, losses: Sequence[str], targets: Sequence[str],
                 output_dir: str, engine: EngineOptions | None = None, fast_path: FastPath | None = None,
                 resume: bool = False, seed: int = 0, pool_size: int = 256, gallery_size: int = 4,
                 transfer_victim: Victim | None = None) -> None:
        super().__init__()
        if not targets:
            raise ConfigError("target.kinds is empty; name at least one target kind")
        try:
            self.kinds = [target_kind(kind) for kind in targets]
        except ConfigError as err:
            raise ConfigError(f"target.kinds: {err}") from None
        self.attack = attack.with_losses(losses)
        self.ensemble = self.attack if isinstance(self.attack, Ensemble) else None
        self.members = list(self.ensemble.members) if self.ensemble else [self.attack]
        self.engine = engine or EngineOptions()
        fast_path = fast_path or FastPath()
        self.victim = fast_path.wrap(victim)
        self.float64 = fast_path.precision == FLOAT64  # every batch in float64
        # the precision of the verdicts it is compared with (bf16: autocast; fp64: float64); not compiled
        # (a few predictions per replica: less than a compilation costs) nor re-laid out
        self.transfer_victim = None if transfer_victim is None else with_precision(transfer_victim, fast_path.precision)
        self.losses = [label for member in self.members for label in self._labels(member)]
        self.targets = [kind.name for kind in self.kinds]
        self.output_dir = Path(output_dir)
        self.resume = resume
        self.seed = seed
        self.pool_size = pool_size
        self.records: list[Record] = []
        self.gallery_size = gallery_size
        self.gallery: dict[str, list[dict]] = {kind: [] for kind in self.targets}
        self.checks: dict[str, dict] = {}
        self._skipped: dict[str, set[tuple[str, str]]] = {kind: set() for kind in self.targets}
        self._skipped_pairs: dict[str, set[tuple[tuple[str, str], str]]] = {kind: set() for kind in self.targets}
        self._writer: RecordWriter | None = None
        self._done: set[tuple[str, str, str, str]] = set()
        self._earlier: list[Record] = []  # records of a resumed run (a cascade's broken images)
        self._progress: BatchProgress | None = None  # in-batch progress (set when the test starts)
        self._pool: TargetPool | None = None
        self.total_images = 0  # test images of this run (its shard), set when the test starts
        self._finished: set[tuple[str, str]] = set()  # (dataset, image id) of the images whose batch ended
        self._finish: FinishLine | None = None  # the ranks' end-of-run rendezvous (several ranks)

    def _labels(self, member: Attack) -> dict[str, str]:
        """``{records' loss label: registry name}`` of a member (qualified in an ensemble)."""
        return {(self.ensemble.label(member, loss) if self.ensemble else loss): loss for loss in member.losses}

    # ------------------------------------------------------------------ set-up
    def on_test_start(self) -> None:
        self._scan_test_masks()  # before any file of the run is touched: a refused image costs nothing
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
                    self._earlier.extend(kept)
                    if source == merged and world == 1:
                        self.records = kept
        if world > 1:
            self._finish = FinishLine(self.output_dir, rank, world, strategy_timeout_s(self.trainer.strategy))
            self._finish.start()
        if not self.resume:
            self._discard_old_records(merged, path, rank)
        if world > 1:  # no rank writes before every rank has cleaned (or read) the run's files
            self.trainer.strategy.barrier("medis-records-clean")
        self._writer = RecordWriter(path)
        self.total_images = len(self.trainer.datamodule.dataset("test"))
        self._finished = {(r.dataset, r.image_id) for r in self._earlier}
        bar = self.trainer.progress_bar_callback
        self._progress = BatchProgress(getattr(bar, "progress", None) if isinstance(bar, RichProgressBar) else None)

    def _discard_old_records(self, merged: Path, own: Path, rank: int) -> None:
        """A fresh run: each rank deletes its own old file; rank 0 also the merged file and stale shards."""
        if own.exists():
            own.unlink()
        if rank == 0:
            for path in [merged, *stale_shards(self.output_dir)]:
                if path.exists() and path != own:
                    path.unlink()

    def _scan_test_masks(self) -> None:
        """One pass over the masks of the whole test split (targets come from the whole set, not
        this job's shard): the audit (noted by rank 0) and, for random and most-similar targets,
        the :class:`~medis.attacks.targets.TargetPool`. Images are not read; one smaller than the
        metrics need is refused (:func:`medis.data.audit.refuse_tiny`)."""
        dataset = self.trainer.datamodule.dataset("test", sharded=False)
        audit, pooled = MaskAudit(), any(kind.pooled for kind in self.kinds)
        masks, keys = [], []
        for entry in dataset.samples:
            levels = read_mask_levels(entry.mask)
            refuse_tiny(entry.image, levels.shape)
            mask = audit.add(entry.mask, levels)
            if pooled:
                masks.append(torch.from_numpy(mask).float()[None])
                keys.append((dataset.dataset_of(entry), entry.id))
        if pooled:
            self._pool = TargetPool(masks, keys, seed=self.seed, pool_size=self.pool_size)
        if self.global_rank == 0:
            self._note("masks", audit.as_dict())

    def _references(self, kind, masks: list[torch.Tensor], keys: list[tuple[str, str]]):
        """Targets for the images of a batch (a list, or ``{loss label: list}`` for the paper's random
        targets), built by the kind's builder from the pool."""
        positions = self._pool.positions(keys) if self._pool is not None else []
        return kind.build(self._pool, masks, positions, self.losses, self.members[0].mode)

    # ------------------------------------------------------------------ the attack
    def _note(self, name: str, findings: dict) -> None:
        """Keep a check's findings for ``checks.json`` and warn each of its warnings once."""
        self.checks[name] = findings
        for message in findings.get("warnings", []):
            rank_zero_warn(f"medis check ({name}): {message}")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        cast = (lambda t: t.double()) if self.float64 else (lambda t: t)  # noqa: E731
        images = [cast(image) for image in batch["image"]]
        masks = [cast(mask) for mask in batch["mask"]]
        if "victim" not in self.checks and self.global_rank == 0:
            self._note("victim", check_victim(self.victim, images[:4], masks[:4], self.engine.loss_size).as_dict())
        for dataset in dict.fromkeys(batch["dataset"]):
            rows = [i for i, name in enumerate(batch["dataset"]) if name == dataset]
            for kind in self.kinds:
                self._attack_group(kind, dataset, [images[i] for i in rows], [masks[i] for i in rows],
                                   [batch["id"][i] for i in rows])

    def _attack_group(self, kind, dataset: str, images: list[torch.Tensor], masks: list[torch.Tensor],
                      ids: list[str]) -> None:
        keys = [(dataset, image_id) for image_id in ids]
        references = self._references(kind, masks, keys)
        equal = self._equal_to_ground_truth(kind, references, masks)
        keep = [i for i in range(len(ids)) if not all(flags[i] for flags in equal.values())]
        self._skipped[kind.name] |= {keys[i] for i in range(len(ids)) if i not in keep}
        self._skipped_pairs[kind.name] |= {(keys[i], label) for label, flags in equal.items() for i in keep
                                           if flags[i]}
        wanted = self.gallery_size - len(self.gallery[kind.name])
        result = AttackResult(records=[])
        assert self._writer is not None
        cascade = self._cascade(kind, dataset, ids)
        for member in self.members:
            standing = [i for i in keep if ids[i] not in cascade.broken]
            starts = cascade.starts([ids[i] for i in standing], [images[i] for i in standing])
            done = self._attack_member(member, kind, max(wanted, 0), dataset, images, references, ids, standing, equal,
                                       None if starts is None else dict(zip(standing, zip(*starts))))
            cascade.note(done.records, done.best)
            done.best.clear()
            self.records.extend(self._writer.append(done.records))  # each member's rows as it ends; never a row twice
            result.extend(done)
        kept = [i for i in keep if any(r.image_id == ids[i] for r in result.records)]
        if wanted > 0 and kept:
            pick = (lambda seq: [seq[i] for i in kept])
            reference = {k: pick(v) for k, v in references.items()} if isinstance(references, dict) else pick(references)
            self._keep_for_gallery(kind.name, dataset, pick(images), pick(masks), reference, pick(ids), result, wanted)

    def _equal_to_ground_truth(self, kind, references, masks: list[torch.Tensor]) -> dict[str, list[bool]]:
        """``{loss label (or "" for targets shared by all losses): one flag per image}``: the target
        equals the image's ground truth, so the image (or, with the paper's per-loss targets, the
        (image, loss) pair) is skipped and counted, never attacked."""
        if not kind.targeted:
            return {"": [False] * len(masks)}
        if isinstance(references, dict):
            return {label: same_as_ground_truth(refs, masks).tolist() for label, refs in references.items()}
        return {"": same_as_ground_truth(references, masks).tolist()}

    def _cascade(self, kind, dataset: str, ids: list[str]) -> Cascade:
        """The cascade bookkeeper of one group (a no-op outside a cascade), told which images the
        resumed run's records have broken already (their best images are not on disk: those images'
        next members start at random, or at the clean image beside warm-started ones)."""
        cascade = Cascade(self.ensemble, kind.targeted)
        mine = set(ids)
        cascade.note([r for r in self._earlier if r.dataset == dataset and r.target == kind.name and r.image_id in mine])
        return cascade

    def _attack_member(self, member: Attack, kind, keep_images: int, dataset: str, images: list[torch.Tensor],
                       references, ids: list[str], keep: list[int], equal: dict[str, list[bool]],
                       starts: dict[int, tuple[torch.Tensor, int]] | None = None) -> AttackResult:
        """One attack of the plan on the images of ``keep`` it has not finished (resume), from
        ``starts`` (a cascade's warm starts and their steps, by image position) where given; the
        chosen images of the first ``keep_images`` of them are kept (the gallery's)."""
        labels = self._labels(member)
        todo = [i for i in keep if any((dataset, ids[i], kind.name, label) not in self._done for label in labels)]
        if not todo:
            return AttackResult(records=[])
        pick = (lambda seq: [seq[i] for i in todo])
        if isinstance(references, dict):
            reference = {label: pick(references[label]) for label in labels}
        else:
            reference = pick(references)
        loss_fns = {label: build_loss(loss, member.mode) for label, loss in labels.items()}
        options = self.engine
        if keep_images:  # the gallery shows the first images of a batch: only theirs are kept (copies)
            options = dataclasses.replace(self.engine, keep_images=True,
                                          keep_only=tuple(ids[i] for i in todo[:keep_images]))
        if self.ensemble is not None:
            member, options = self.ensemble.member_for(member, kind.targeted), self.ensemble.options_for(options)
        if self._progress is not None:
            report = self._progress.reporter(f"{kind.name} · {member.name}")
            options = dataclasses.replace(options, progress=report if self._finish is None else self._finish.beating(report))
        skip = {label: pick(flags) for label, flags in equal.items() if label in labels}
        warm = None if starts is None else [starts.get(i, (images[i], 0)) for i in todo]
        return run_attack(self.victim, pick(images), reference, member, target=kind, losses=loss_fns, options=options,
                          seed=self.seed, ids=pick(ids), dataset=dataset, transfer_to=self.transfer_victim, skip=skip,
                          start=None if warm is None else [w[0] for w in warm],
                          start_steps=None if warm is None else [w[1] for w in warm])

    @property
    def skipped(self) -> dict[str, int]:
        """Images skipped per target kind because their target equals their ground truth (all ranks
        after the test epoch)."""
        return {kind: len(keys) for kind, keys in self._skipped.items()}

    @property
    def skipped_pairs(self) -> dict[str, int]:
        """(image, loss) pairs skipped per target kind because the loss's own target (the paper's
        per-loss random targets) equals the image's ground truth."""
        return {kind: len(pairs) for kind, pairs in self._skipped_pairs.items()}

    # ------------------------------------------------------------------ gallery
    def _keep_for_gallery(self, kind: str, dataset: str, images: list[torch.Tensor], masks: list[torch.Tensor],
                          references, ids: list[str], result: AttackResult, wanted: int) -> None:
        """Keep up to ``wanted`` gallery entries (see the module docstring) from one attacked group."""
        for i, image_id in enumerate(ids[:wanted]):
            best = representative(r for r in result.records if r.image_id == image_id)
            adversarial = result.adversarial.get((image_id, best.loss))
            if adversarial is None:  # not kept by the member that found it
                continue
            reference = references[best.loss][i] if isinstance(references, dict) else references[i]
            shown = loss_shape(tuple(images[i].shape[-2:]), DISPLAY_SIDE)  # the probabilities at display size
            with torch.no_grad():
                probs = torch.cat([self.victim(x[None], shown).prob.cpu() for x in (images[i], adversarial.to(images[i]))])
            self.gallery[kind].append({  # kept at display size (gigabytes at ISIC's sizes otherwise)
                "dataset": dataset, "id": image_id, "loss": best.loss, "success": best.success,
                "steps": best.steps, "set_aside": best.set_aside, "metric": best.metric,
                "image": display_copy(images[i]), "adversarial": display_copy(adversarial),
                "mask": display_copy(masks[i], binary=True), "reference": display_copy(reference, binary=True),
                "clean_prob": display_copy(probs[0]), "adversarial_prob": display_copy(probs[1])})

    def on_test_batch_end(self, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Count the batch's images as done; every ``TRIM_EVERY`` batches, hand freed heap back to the
        system (:mod:`medis.runtime.cpu_allocator`)."""
        self._finished.update(zip(batch["dataset"], batch["id"]))
        if self._finish is not None:
            self._finish.beat()
        if (batch_idx + 1) % TRIM_EVERY == 0:
            release_free_heap()

    @property
    def images_done(self) -> int:
        """Images of this run whose batch has ended (with a resumed run's earlier ones)."""
        return len(self._finished)

    def stopped_line(self, cause: str) -> str:
        """``stopped by <cause> after K of N images`` (``cause``: ``SIGTERM``, ``SIGINT``, ...)."""
        return f"stopped by {cause} after {self.images_done} of {self.total_images} images"

    def leave_finish_line(self) -> None:
        """Several ranks: say that this one stopped before the end (:meth:`FinishLine.leave`)."""
        if self._finish is not None:
            self._finish.leave()

    def close_records(self) -> None:
        """Close this rank's record file (every row written so far is whole and on disk)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def on_test_epoch_end(self) -> None:
        """Close this rank's record file; with several ranks, rank 0 merges the shards."""
        self.close_records()
        if self.global_rank == 0 and self.checks:
            atomic_write_text(self.output_dir / "checks.json", json.dumps(self.checks, indent=1) + "\n")
        if self.trainer.world_size > 1:
            assert self._finish is not None
            self._finish.cross()
            self._finish.wait()  # no collective while another rank still attacks (medis.runtime.finish_line)
            self.trainer.strategy.barrier("medis-records-merge")
            gathered: list = [None] * self.trainer.world_size
            torch.distributed.all_gather_object(gathered, (self._skipped, self._skipped_pairs))
            for skipped, pairs in gathered:
                for kind in self.targets:
                    self._skipped[kind] |= skipped[kind]
                    self._skipped_pairs[kind] |= pairs[kind]
            if self.global_rank == 0:
                self.records = merge_shards(self.output_dir)
            self.trainer.strategy.barrier("medis-records-merged")
            if self.global_rank == 0:
                self._finish.clear()

    def configure_optimizers(self) -> None:
        return None
