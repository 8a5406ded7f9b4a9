"""Sweep-report plot titles say what differs between the jobs, not their raw override strings."""

from __future__ import annotations

from medis.reporting.plots import distinct_labels


def test_titles_keep_only_what_differs_and_shorten_paths() -> None:
    labels = ["attack=pgd model.checkpoint=/home/me/runs/2026/ckpt/best.ckpt seed=0",
              "attack=dag model.checkpoint=/home/me/runs/2026/ckpt/best.ckpt seed=0",
              "attack=dag model.checkpoint=/home/me/runs/2026/ckpt/other.ckpt seed=0"]
    shown = distinct_labels(labels)
    assert shown[labels[0]] == "attack=pgd checkpoint=best.ckpt"
    assert shown[labels[2]] == "attack=dag checkpoint=other.ckpt"
    assert all("/" not in title and "seed" not in title for title in shown.values())


def test_one_job_or_identical_jobs_need_no_label() -> None:
    assert distinct_labels(["model.checkpoint=/x/y.ckpt"]) == {"model.checkpoint=/x/y.ckpt": ""}
    assert distinct_labels([""]) == {"": ""}
