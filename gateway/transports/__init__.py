"""File transports: SFTP servers and local drop folders.

``store`` is the small file-system interface both share (``LocalStore``;
``SftpStore`` in ``sftp``); ``source`` turns files into inputs through
``Intake.accept``; ``envelopes`` is the hub side of a file hop (envelope
files in, signed receipt files out); ``watch`` wakes the loops on inotify
events, with polling as the fallback. The forwarder is
``gateway.forwarders.files``.
"""
