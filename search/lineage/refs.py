"""A search run's refs: its variant tags with their figures, its queued candidates' refs, and their
exchange with a shared remote.

Each evaluated variant's commit is tagged `search/<run>/v<NNNN>` with an annotated tag whose
message is its figures as one line of JSON; a queued candidate's commit is kept reachable (from
`git gc`, and from another machine) by `refs/search-candidates/<run>/v<NNNN>`. Tags are never
GPG-signed (an unattended search cannot answer a passphrase prompt), whatever `tag.gpgSign` says.
A `RunRefs` is reached as `Lineage.refs` and takes the lock of the `SharedRepo` it shares with it.
"""

from __future__ import annotations

import json
import re

import git

from search.lineage.shared_repo import LineageError, SharedRepo, git_error_text

TAG_PREFIX = "search"
CANDIDATE_REFS = "refs/search-candidates"  # refs/search-candidates/<run>/v<NNNN>: queued commits
TAG_NUMBER = re.compile(r"v(\d{4,})")


def _remote_says(progress: git.RemoteProgress) -> str:
    """The server's own messages during a push (hooks, policies), as a suffix for an error."""
    lines = [line[len("remote:"):].strip() for line in progress.other_lines if line.startswith("remote:")]
    lines = [line for line in lines if line]
    return f" (remote: {' / '.join(lines)})" if lines else ""


class RunRefs:
    """The variant tags and candidate refs of one search run, pushed to and fetched from a remote.

    Args:
        shared: the repository, shared with the run's `Lineage`.
        run: the run name; tags are `search/<run>/v<NNNN>`. No `/` (it would nest runs).
        remote: a configured remote name or a URL to push tags to and fetch them from; None for a
            single-machine run (then `push` and `fetch` do nothing).

    Raises:
        LineageError: if `run` is not a valid tag part.
    """

    def __init__(self, shared: SharedRepo, run: str, remote: str | None = None):
        self._git = shared
        self.run = run
        self.remote = remote
        if not self.run or "/" in self.run:
            raise LineageError(f"run name {self.run!r} must be non-empty and contain no '/'")
        if not self._git.is_valid_ref(self._tag_name(0, full=True)):
            raise LineageError(f"run name {self.run!r} cannot be part of a git tag name "
                               "(see `git check-ref-format`): choose another run.name")

    # --- tags ---------------------------------------------------------------------------------

    def tag_ref(self, number: int) -> str:
        """The full ref name of variant `number`'s tag (for `push`)."""
        return self._tag_name(number, full=True)

    def _tag_name(self, number: int, full: bool = False) -> str:
        name = f"{TAG_PREFIX}/{self.run}/v{number:04d}"
        return f"refs/tags/{name}" if full else name

    def tag(self, sha: str, number: int, figures: dict) -> str:
        """Tag commit `sha` as variant `number` with its figures (one line of JSON).

        Tagging the same commit again rewrites the figures (a resumed run may complete them).

        Returns:
            The tag name, `search/<run>/v<NNNN>`.

        Raises:
            LineageError: if the tag already names another commit, `sha` is not a commit, or the
                figures are not JSON-serialisable.
        """
        if number < 0:
            raise LineageError(f"variant number must be >= 0, got {number}")
        name = self._tag_name(number)
        try:
            message = json.dumps(figures, sort_keys=True)
        except (TypeError, ValueError) as exc:
            raise LineageError(f"the figures for {name} are not JSON-serialisable: {exc}") from exc
        with self._git.lock:
            target = self._git.resolve(sha)
            existing = self._git.ref_target(self._tag_name(number, full=True))
            if existing is not None and existing != target:
                raise LineageError(f"tag {name} already names commit {existing[:12]}, not {target[:12]}: "
                                   "variant numbers of a run must not be reused")
            try:
                self._git.repo.git.tag("--annotate", "--no-sign", "--force", "--message", message, name, target,
                                       env=self._git.env)
            except git.GitCommandError as exc:
                raise LineageError(f"creating tag {name} failed: {git_error_text(exc)}") from exc
            return name

    def tags(self) -> dict[int, tuple[str, dict]]:
        """Every variant tag of this run: number -> (commit sha, figures).

        Raises:
            LineageError: if a tag under `search/<run>/` is not one this module writes (names it).
        """
        prefix = f"refs/tags/{TAG_PREFIX}/{self.run}/"
        with self._git.lock:
            out = self._git.repo.git.for_each_ref(
                "--format=%(refname)%00%(objecttype)%00%(*objectname)%00%(contents:subject)", prefix)
        found: dict[int, tuple[str, dict]] = {}
        for line in filter(None, out.split("\n")):
            ref, kind, target, subject = line.split("\0", 3)
            match = TAG_NUMBER.fullmatch(ref[len(prefix):])
            if kind != "tag" or match is None:
                raise LineageError(f"{ref} is not an annotated variant tag (search/<run>/v<NNNN>)")
            try:
                figures = json.loads(subject)
            except json.JSONDecodeError as exc:
                raise LineageError(f"tag {ref} does not hold JSON figures: {subject[:80]!r}") from exc
            found[int(match.group(1))] = (target, figures)
        return dict(sorted(found.items()))

    # --- candidates ---------------------------------------------------------------------------

    def _candidate_ref(self, number: int) -> str:
        return f"{CANDIDATE_REFS}/{self.run}/v{number:04d}"

    def mark_candidate(self, sha: str, number: int) -> None:
        """Point the ref `refs/search-candidates/<run>/v<NNNN>` at a queued candidate's commit and
        push it: a worker on another machine fetches the commit from the remote through it, and
        `git gc` keeps a commit that waits long in the queue.

        Raises:
            LineageError: if `sha` is not a commit, or the push fails.
        """
        ref = self._candidate_ref(number)
        with self._git.lock:
            self._git.repo.git.update_ref(ref, self._git.resolve(sha))
        self.push([ref])

    # --- remote -------------------------------------------------------------------------------

    def _refspec(self) -> list[str]:
        """Every ref of this run: its variant tags and its candidates' refs."""
        patterns = [f"refs/tags/{TAG_PREFIX}/{self.run}/*", f"{CANDIDATE_REFS}/{self.run}/*"]
        return [f"+{p}:{p}" for p in patterns]

    def push(self, refs: list[str] | None = None) -> None:
        """Push this run's tags and candidate refs (and so their commits) to the remote; nothing
        without a remote.

        Refs are force-pushed, because a resumed run may rewrite a tag's figures.

        Args:
            refs: full ref names to push (`tag_ref(n)`, a candidate's ref); None: all of the run's.

        Raises:
            LineageError: with the remote's message, if the push fails or a tag is rejected.
        """
        if self.remote is None:
            return
        specs = [f"+{r}:{r}" for r in refs] if refs is not None else self._refspec()
        with self._git.lock:
            remote = git.Remote(self._git.repo, self.remote)
            progress = git.RemoteProgress()  # keeps the `remote:` lines a server hook prints
            try:
                results = remote.push(specs, progress=progress)
                results.raise_if_error()
            except git.GitCommandError as exc:
                raise LineageError(f"pushing the tags of run {self.run} to {self.remote} failed: "
                                   f"{git_error_text(exc)}{_remote_says(progress)}") from exc
            failed = git.PushInfo.ERROR | git.PushInfo.REJECTED | git.PushInfo.REMOTE_REJECTED \
                | git.PushInfo.REMOTE_FAILURE
            rejected = [f"{info.remote_ref_string}: {info.summary.strip()}"
                        for info in results if info.flags & failed]
            if rejected:
                raise LineageError(f"{self.remote} rejected tags of run {self.run}: {'; '.join(rejected)}"
                                   f"{_remote_says(progress)}")

    def fetch(self, shas: list[str]) -> None:
        """Fetch this run's tags from the remote and make sure the commits `shas` are here.

        Commits that no tag reaches are asked for by sha (the remote must allow that). Nothing
        happens without a remote.

        Raises:
            LineageError: with the remote's message, or naming the commits still missing.
        """
        if self.remote is None:
            return
        with self._git.lock:
            remote = git.Remote(self._git.repo, self.remote)
            try:
                remote.fetch(self._refspec())
            except git.GitCommandError as exc:
                raise LineageError(f"fetching the tags of run {self.run} from {self.remote} failed: "
                                   f"{git_error_text(exc)}") from exc
            missing = [sha for sha in shas if not self._git.has_commit(sha)]
            if missing:
                status, _, err = self._git.repo.git.fetch(
                    "--no-tags", "--", self.remote, *missing, with_extended_output=True, with_exceptions=False)
                still = [sha for sha in missing if not self._git.has_commit(sha)]
                if still:
                    detail = f": {err.strip()}" if status != 0 and err.strip() else ""
                    raise LineageError(f"commits {', '.join(s[:12] for s in still)} are not on {self.remote} "
                                       f"under a tag of run {self.run}{detail}")


__all__ = ["RunRefs"]
