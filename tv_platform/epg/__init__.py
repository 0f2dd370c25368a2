"""Electronic programme guide (EPG): a synthetic, deterministic daily guide for the 148 channels
(:mod:`~tv_platform.epg.generator`), an XMLTV importer (:mod:`~tv_platform.epg.xmltv`), the guide's Hive table
(:mod:`~tv_platform.epg.tables`) and the attribution of viewing to programmes (:mod:`~tv_platform.epg.attribution`).
See docs/programmes.md."""
