"""``iznet analyze``: judge an embedder on labelled faces and write an HTML report."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.option("--model", type=click.Path(path_type=Path),
              help="Embedder to judge: a model directory (or its model.pt / model.json) from `iznet embed train`.")
@click.option("--data", type=click.Path(path_type=Path, file_okay=False),
              help="Faces: a dataset from `iznet data build`, or a folder with one sub-folder of images per person.")
@click.option("--embeddings", "embeddings_file", type=click.Path(path_type=Path, dir_okay=False),
              help="Precomputed embeddings (.npz with 'embeddings' and 'labels', optionally 'paths' and 'card') "
                   "instead of --model/--data.")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=Path("iznet-report"),
              show_default=True, help="Folder for the report (index.html, PNG figures, CSV tables, result.json).")
@click.option("--split", type=click.Choice(["train", "dev", "test"]),
              help="Only this split of a built dataset (default: all its faces).")
@click.option("--people", type=click.IntRange(2), help="Only the N people with the most faces (the study had 12).")
@click.option("--person", "names", multiple=True, help="Only this person (repeat for several).")
@click.option("--max-per-person", type=click.IntRange(2), help="At most this many faces per person (seeded choice).")
@click.option("--pairs", type=click.Path(path_type=Path, dir_okay=False),
              help="LFW-format pairs file for the verification numbers (pairs among the analysed faces are used); "
                   "default: a built dataset's pairs of --split, else balanced all-pairs of the analysed faces.")
@click.option("--tsne/--no-tsne", default=True, show_default=True, help="Run t-SNE (the slow part).")
@click.option("--tsne-perplexity", type=click.FloatRange(1), default=150.0, show_default=True,
              help="t-SNE perplexity (the study's 150); capped at (faces - 1) / 3.")
@click.option("--tsne-iter", type=click.IntRange(250), default=5000, show_default=True,
              help="Most t-SNE iterations (the study's 5000); it stops sooner once it makes no progress.")
@click.option("--spread-quantile", type=click.FloatRange(0.5, 1.0), default=0.95, show_default=True,
              help="A person's spread is this quantile of their intra-person distances; two people overlap when "
                   "their medoids are closer than either spread.")
@click.option("--collapse-share", type=click.FloatRange(0.0, 1.0), default=0.05, show_default=True,
              help="Warn of collapse when this share of distances is exactly 0 or exactly 2.")
@click.option("--batch-size", type=click.IntRange(1), default=64, show_default=True, help="Faces per embedding batch.")
@click.option("--threads", type=click.IntRange(1), default=1, show_default=True,
              help="CPU threads for embedding and t-SNE (1 suits a shared machine).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for sampling and t-SNE.")
@click.option("--title", default=None, help="Report title (default names the model).")
@click.option("--save-embeddings/--no-save-embeddings", default=True, show_default=True,
              help="Keep the embeddings in OUT/embeddings.npz (re-run with --embeddings without the model).")
@click.option("--quiet", is_flag=True, help="No progress output.")
def analyze(model, data, embeddings_file, out, split, people, names, max_per_person, pairs, tsne, tsne_perplexity,
            tsne_iter, spread_quantile, collapse_share, batch_size, threads, seed, title, save_embeddings,
            quiet) -> None:
    """Judge an embedder the study's way and write an HTML report.

    Embeds the faces of DATA with MODEL (or reads --embeddings), then draws a t-SNE coloured by person,
    boxplots of the distances within each person, and the table of distances between people's medoids;
    warns about people whose clusters overlap and about collapsed embeddings; adds verification numbers
    and the model card. Open OUT/index.html in a browser.
    """
    from training.analysis.run import make_report

    say = (lambda m: None) if quiet else (lambda m: click.echo(m, err=True))
    result, index = make_report(out, model=model, data=data, embeddings=embeddings_file, split=split,
                                people=people, names=list(names), max_per_person=max_per_person, pairs=pairs,
                                tsne=tsne, perplexity=tsne_perplexity, iterations=tsne_iter,
                                spread_quantile=spread_quantile, collapse_share=collapse_share,
                                batch_size=batch_size, threads=threads, seed=seed, title=title,
                                save_embeddings=save_embeddings, progress=not quiet, say=say)
    s = result.summary
    click.echo(f"{index}: {s['faces']} faces of {s['people']} people; nearest-medoid accuracy "
               f"{s['nearest_medoid_accuracy']:.3f}; {len([w for w in result.warnings if w.level == 'warning'])} "
               f"warnings")
    for w in result.warnings[:8]:
        click.echo(f"  {w.kind}: {w.message}")
    if len(result.warnings) > 8:
        click.echo(f"  ... {len(result.warnings) - 8} more in the report")
