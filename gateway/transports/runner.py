"""Start and stop the file-transport tasks of a node (file sources, envelope folders).

The composition root (``gateway.app``) owns one ``FileTasks``. A reload stops
every task and starts them again from the new configuration: all their state
is on disk (claimed files in processing/, partial downloads in
state_dir/transfers/), so a restart resumes where the last run stopped.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path

from config.models import DirectoryTransport, SftpTransport
from gateway.hub import Hub
from gateway.intake import Intake
from gateway.node import Node
from gateway.transports.envelopes import EnvelopeFolder
from gateway.transports.sftp import SftpStore
from gateway.transports.source import FileSource
from gateway.transports.store import FileStore, LocalStore
from gateway.transports.watch import Wakeup
from monitoring.events import Events

__all__ = ["FileTasks"]

log = logging.getLogger("gateway.files")
STOP_S = 20.0


@dataclass
class FileTasks:
    intake: Intake
    events: Events
    hub: Hub | None = None
    sources: dict[str, FileSource] = field(default_factory=dict)
    folders: list[EnvelopeFolder] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self, node: Node) -> None:
        self._stop = asyncio.Event()
        for name, src in node.sources.items():
            t = src.cfg.transport
            store: FileStore
            if isinstance(t, SftpTransport):
                store = SftpStore(t, resolve=node.config.resolve)
                incoming, wake = t.remote_dir, None
            elif isinstance(t, DirectoryTransport):
                store = LocalStore()
                incoming = str(node.config.resolve(t.path))
                wake = Wakeup([incoming], mode=t.watch)
            else:
                continue
            fs = FileSource(
                node=node.name,
                source=name,
                transport=t,
                incoming=incoming,
                store=store,
                intake=self.intake,
                staging=node.state_dir / "transfers" / name,
                events=self.events,
                wake=wake,
            )
            self.sources[name] = fs
            self._tasks.append(
                asyncio.create_task(fs.run(self._stop), name=f"files:{name}")
            )
        hub_cfg = node.config.model.hub
        if self.hub is not None and hub_cfg is not None:
            for e in hub_cfg.envelope_dirs:
                path = node.config.resolve(e.path)
                folder = EnvelopeFolder(
                    self.hub,
                    path=path,
                    receipts=node.config.resolve(e.receipts_dir),
                    errors=path / Path(e.error_dir),
                    poll_interval_s=e.poll_interval_s,
                    events=self.events,
                    watch=e.watch,
                )
                self.folders.append(folder)
                self._tasks.append(
                    asyncio.create_task(folder.run(self._stop), name=folder.name)
                )
        if self._tasks:
            log.info(
                "File transports started.",
                extra={
                    "sources": len(self.sources),
                    "envelope_dirs": len(self.folders),
                },
            )

    async def stop(self) -> None:
        self._stop.set()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=STOP_S)
            for t in pending:
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        self.sources = {}
        self.folders = []

    async def restart(self, node: Node) -> None:
        await self.stop()
        self.start(node)

    def status(self, name: str) -> dict[str, object]:
        fs = self.sources.get(name)
        if fs is None:
            return {}
        return {"transport_error": fs.last_error, "files": fs.files_done}
