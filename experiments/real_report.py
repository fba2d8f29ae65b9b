"""Summary and markdown tables of the real-data benchmark (`real.py`)."""

import collections
from typing import Dict, List

import numpy as np

from experiments import real_photos

_METHODS = real_photos.METHODS
_LABELS = {'detector': 'detector', 'mean': 'mean face', 'base': 'base',
           'final': 'final'}


def _mean(values):
  values = [v for v in values if v is not None]
  return float(np.mean(values)) if values else None


def _level_means(rows: List[Dict], field: str, stat=None) -> Dict:
  """{'base', 'final': mean of row[field][level] (its [stat] if given)
  over the rows that have it}."""
  means = {}
  for level in real_photos.LEVELS:
    values = [r.get(field, {}).get(level) for r in rows]
    if stat is not None:
      values = [v.get(stat) if v else None for v in values]
    means[level] = _mean(values)
  return means


def _negative_dc(rows: List[Dict]) -> Dict:
  """{'base', 'final': how many rows' lights have a DC term <= 0}."""
  return {level: sum(bool(r.get('light_colour', {}).get(level, {}).get(
      'negative_dc')) for r in rows) for level in real_photos.LEVELS}


def _appearance(rows: List[Dict]) -> Dict:
  """Means of the appearance fields over `rows` (found faces)."""
  return {'colour_difference': _level_means(rows, 'colour_difference'),
          'out_of_range': _level_means(rows, 'out_of_range'),
          'light_chroma': _level_means(rows, 'light_colour', 'chroma'),
          'negative_dc': _negative_dc(rows)}


def _scan_group(rows: List[Dict]) -> Dict:
  found = [r for r in rows if r['found']]
  group = {'renders': len(rows), 'found': len(found)}
  group['nme'] = {m: _mean([r['nme'][m] for r in found]) for m in _METHODS}
  group['mm'] = {'mean_face': dict(rows[0]['mean_face_mm'])}
  for level in ('base', 'final'):
    group['mm'][level] = {
        stat: _mean([r['mm'][level][stat] for r in found])
        for stat in ('mean_mm', 'median_mm')}
  group['seconds'] = _mean([r['seconds'] for r in found])
  appearance = _appearance(found)
  mean_face = rows[0].get('mean_face_albedo') or {}
  for stat in ('mae', 'mae_raw', 'gain_chroma'):
    appearance[f'albedo_{stat}'] = dict(
        mean_face=mean_face.get(stat),
        **_level_means(found, 'albedo', stat))
  group['appearance'] = appearance
  return group


def _photo_group(rows: List[Dict]) -> Dict:
  found = [r for r in rows if r['found']]
  return {'photos': len(rows), 'not_found': len(rows) - len(found),
          'nme': {m: _mean([r['nme'][m] for r in found]) for m in _METHODS},
          'seconds': _mean([r['seconds'] for r in found]),
          'appearance': _appearance(found)}


def _identity_group(rows: List[Dict]) -> Dict:
  """One scan's 'identity' rows: mean mm of each view's identity (per yaw
  and over all views) and of the joined one, over the conditions."""
  rows = [r for r in rows if r.get('views')]
  views = list(dict.fromkeys(v for r in rows for v in r['views']))
  return {
      'conditions': len(rows),
      'mean_face_mm': rows[0]['mean_face_mm']['mean_mm'] if rows else None,
      'single_view_mm': {v: _mean([r['single_view_mm'].get(v, {}).get(
          'mean_mm') for r in rows]) for v in views},
      'single_views_mm': _mean([x['mean_mm'] for r in rows
                                for x in r['single_view_mm'].values()]),
      'joined_mm': _mean([r['joined_mm']['mean_mm'] for r in rows]),
      'joined_median_mm': _mean([r['joined_mm']['median_mm'] for r in rows]),
  }


def _grouped(rows, key, summarise):
  groups = collections.OrderedDict()
  for row in rows:
    groups.setdefault(key(row), []).append(row)
  return {name: summarise(members) for name, members in groups.items()}


def summarise(results: Dict) -> Dict:
  """Means per scan and yaw, per scan and condition, per photo set and
  yaw bin; seconds per reconstruction."""
  renders, photos = results['scan_renders'], results['photos']
  seconds = [r['seconds'] for r in renders + photos if r['found']]
  return {
      'scan_by_yaw': _grouped(renders, lambda r: f'{r["scan"]} {r["yaw"]:g}',
                              _scan_group),
      'scan_by_condition': _grouped(
          renders, lambda r: f'{r["scan"]} {r["light"]}/{r["background"]}',
          _scan_group),
      'scan_all': _grouped(renders, lambda r: r['scan'], _scan_group),
      'photos_by_yaw': _grouped(
          sorted(photos, key=lambda r: (r['set'], r['yaw_bin'])),
          lambda r: f'{r["set"]} {r["yaw_bin"]}', _photo_group),
      'photos_by_set': _grouped(photos, lambda r: r['set'], _photo_group),
      'photos_all_by_yaw': _grouped(
          sorted(photos, key=lambda r: r['yaw_bin']),
          lambda r: f'all {r["yaw_bin"]}', _photo_group),
      'identity': _grouped(results.get('identities', []),
                           lambda r: r['scan'], _identity_group),
      'seconds_per_reconstruction': {
          'mean': _mean(seconds),
          'median': float(np.median(seconds)) if seconds else None,
          'count': len(seconds)},
  }


def _f(value, digits=3):
  return '-' if value is None else f'{value:.{digits}f}'


def _scan_table(groups: Dict, title: str) -> List[str]:
  lines = [f'| {title} | found | NME detector | NME mean face | NME base '
           '| NME final | mean face mm (mean / median) | base mm | final mm '
           '| s / face |', '|---' * 10 + '|']
  for name, g in groups.items():
    mm = g['mm']
    pair = lambda x: f'{_f(x["mean_mm"], 2)} / {_f(x["median_mm"], 2)}'
    lines.append(
        f'| {name} | {g["found"]}/{g["renders"]} | ' +
        ' | '.join(_f(g['nme'][m]) for m in _METHODS) +
        f' | {pair(mm["mean_face"])} | {pair(mm["base"])} | '
        f'{pair(mm["final"])} | {_f(g["seconds"], 1)} |')
  return lines


def _identity_table(groups: Dict) -> List[str]:
  """The 'identity' set: scan-to-mesh mean mm without expression."""
  views = list(dict.fromkeys(v for g in groups.values()
                             for v in g['single_view_mm']))
  lines = ['| scan | conditions | mean face | ' + ' | '.join(
      f'view {v} alone' for v in views) + ' | views alone (mean) | joined '
           '(mean / median) |', '|---' * (len(views) + 5) + '|']
  for name, g in groups.items():
    lines.append(
        f'| {name} | {g["conditions"]} | {_f(g["mean_face_mm"], 2)} | ' +
        ' | '.join(_f(g['single_view_mm'].get(v), 2) for v in views) +
        f' | {_f(g["single_views_mm"], 2)} | {_f(g["joined_mm"], 2)} / '
        f'{_f(g["joined_median_mm"], 2)} |')
  return lines


def _photo_table(groups: Dict) -> List[str]:
  lines = ['| set, abs(yaw) | photos | not found | NME detector | '
           'NME mean face at fitted pose | NME base | NME final | s / face |',
           '|---' * 8 + '|']
  for name, g in groups.items():
    lines.append(f'| {name} | {g["photos"]} | {g["not_found"]} | ' +
                 ' | '.join(_f(g['nme'][m]) for m in _METHODS) +
                 f' | {_f(g["seconds"], 1)} |')
  return lines


_IDENTITY_NOTE = (
    'The video path\'s identity (`video_tracking.shared_identity`: the '
    'robust mean of photo fits) from renders of a scan at several yaws, '
    'against each view\'s own identity; final level without expression '
    '(expression 0), scan-to-mesh mean mm, means over the lights and '
    'backgrounds.')
_APPEARANCE_NOTE = (
    'Appearance, final level unless marked (RGB, [0, 1] units). Albedo '
    "MAE: the fitted reflectance against the scan's true albedo at the "
    'closest points of the geometry alignment (scan points within 10 mm '
    'of the mesh), after one least-squares gain per channel (raw: without '
    "it); the mean reflectance on the mean face beside it. Gain chroma: std "
    'of log gain over RGB (0: right colour, only brightness off). Light '
    'chroma: std of log of the SH constant term over RGB (the scene light '
    'is white: 0); neg. DC: faces with a constant term <= 0 (no chroma '
    'then). Out of range: share of vertices with a channel outside [0, 1]. '
    'Colour diff.: mean |photo - rendered fit| over the pixels the face '
    'covers in its crop.')


def _scan_appearance_table(groups: Dict, title: str) -> List[str]:
  lines = [f'| {title} | albedo MAE, gain fitted: mean refl. / base / '
           'final | raw MAE final | gain chroma: mean refl. / final | '
           'light chroma | neg. DC | out of range | colour diff. |',
           '|---' * 8 + '|']
  for name, g in groups.items():
    a = g.get('appearance')
    if not a:
      continue
    mae, chroma = a['albedo_mae'], a['albedo_gain_chroma']
    lines.append(
        f'| {name} | {_f(mae["mean_face"])} / {_f(mae["base"])} / '
        f'{_f(mae["final"])} | {_f(a["albedo_mae_raw"]["final"])} | '
        f'{_f(chroma["mean_face"])} / {_f(chroma["final"])} | '
        f'{_f(a["light_chroma"]["final"])} | {a["negative_dc"]["final"]} | '
        f'{_f(a["out_of_range"]["final"])} | '
        f'{_f(a["colour_difference"]["final"])} |')
  return lines


def _photo_appearance_table(groups: Dict) -> List[str]:
  lines = ['| set | photos found | colour diff. base / final | out of range '
           'base / final | light chroma | neg. DC |', '|---' * 6 + '|']
  for name, g in groups.items():
    a = g.get('appearance')
    if not a:
      continue
    pair = lambda x: f'{_f(x["base"])} / {_f(x["final"])}'
    lines.append(
        f'| {name} | {g["photos"] - g["not_found"]} | '
        f'{pair(a["colour_difference"])} | {pair(a["out_of_range"])} | '
        f'{_f(a["light_chroma"]["final"])} | {a["negative_dc"]["final"]} |')
  return lines


def _photo_rows(photos: List[Dict]) -> List[str]:
  lines = ['| photo | abs(yaw) | box px | NME detector | NME mean face | '
           'NME base | NME final |', '|---' * 7 + '|']
  for r in photos:
    nme = r.get('nme') or {}
    lines.append(f'| {r["set"]}/{r["name"]} | {r["yaw_degrees"]:.1f} | '
                 f'{r["box_px"]:.0f} | ' +
                 (' | '.join(_f(nme.get(m)) for m in _METHODS)
                  if r['found'] else 'not found | | |') + ' |')
  return lines


_VIDEO_METHODS = ('detector', 'video_path', 'video_path_unsmoothed',
                  'frame_by_frame')


def _video_table(videos: Dict) -> List[str]:
  lines = [
      'Jitter: mean second difference of the 68 points over consecutive '
      'frames (25 fps) over sqrt(w h) of the detection box (motion plus '
      'noise; the same motion for all). Agreement: NME of the projected '
      'final landmarks against the detections. Distance: per frame the '
      'median over the 68 points of that distance over the box, its median '
      '/ 95th percentile over frames. Vertex jitter: mean second difference '
      'of the final mesh in the model frame, mm; ARKit: mean |w(t+1) - '
      'w(t)| per weight. Identity spread: frame-by-frame identity meshes '
      'aligned onto their mean, mean per-vertex distance, mm (the video '
      'path shares one identity).', '',
      '| clip | frames (found) | method | jitter | agreement NME | distance '
      'median / p95 | vertex jitter mm | ARKit jitter | identity spread mm '
      '| s / frame |', '|---' * 10 + '|']
  notes = []
  for name, clip in videos.items():
    for method in _VIDEO_METHODS:
      shared = 'video_path' if method.startswith('video') else method
      agreement = clip['agreement_nme'].get(method)
      distance = clip.get('landmark_distance', {}).get(method)
      lines.append(
          f'| {name} | {clip["frames"]} ({clip["found"]}) | '
          f'{method.replace("_", " ")} | {_f(clip["jitter"][method], 4)} | '
          f'{_f(agreement)} | ' + (f'{_f(distance["median"])} / '
                                   f'{_f(distance["p95"])}' if distance
                                   else '-') + ' | '
          f'{_f(clip.get("vertex_jitter_mm", {}).get(method))} | '
          f'{_f(clip.get("arkit_jitter", {}).get(method), 4)} | '
          f'{_f(clip["identity_spread_mm"].get(shared), 2)} | '
          f'{_f(clip["seconds_per_frame"].get(shared), 1)} |')
    counts = clip.get('video_path_frames')
    if counts:
      notes.append(
          f'{name}: {counts["without_face"]} frames without a face, '
          f'{counts["refitted"]} refitted, {counts["lost"]} lost, identity '
          f'from frames {counts["identity_frames"]}')
  return lines + (['', 'Video path: ' + '; '.join(notes) + '.'] if notes
                  else [])


def _motion_table(videos: Dict) -> List[str]:
  """How each method follows the detector's motion (`motion_following`)."""
  lines = []
  if all('motion' in clip for clip in videos.values()):
    lines += [
        'Motion: lag, the shift (frames; positive: behind) at which the '
        "method's mean point velocity best matches the detector's; fast "
        "speed ratio, the method's speed over the detector's on the 20% of "
        'frames where the detector moves fastest (below 1: smeared); still '
        'jitter, the jitter over the frames where the detector moves at '
        'most its median speed.', '',
        '| clip | method | lag, frames | fast speed ratio | still jitter |',
        '|---' * 5 + '|']
    for name, clip in videos.items():
      for method in _VIDEO_METHODS:
        motion = clip['motion'][method]
        lines.append(f'| {name} | {method.replace("_", " ")} | '
                     f'{motion["lag_frames"]} | '
                     f'{_f(motion["fast_speed_ratio"], 2)} | '
                     f'{_f(motion["still_jitter"], 4)} |')
  return lines + ([''] if lines else [])


def _scan_protocol(results: Dict) -> List[str]:
  protocol = results['protocol']
  lines = [
      f'Scan-to-mesh distance (mm, {protocol["distance"]}) over the scan '
      f'within {protocol["crop_mm"]:g} mm of the nose tip after '
      f'{protocol["alignment"]}; the mean face is scored the same way (it '
      'does not depend on the render). NME: 51 inner landmarks against the '
      "scan's projected ones, over sqrt(w h) of their box. Means over the "
      'renders whose face was found.', '']
  units = results.get('fran_units_check')
  lines += [
      f'Renders: {protocol["render_px"]} px, yaw in {protocol["yaw"]}; '
      f'lights {", ".join(protocol["lights"])}; grey and noise '
      'backgrounds. flamefit: metres -> mm, 51 given landmarks, the mean '
      "face's albedo transferred with painted eyes and hair. fran: no "
      "landmarks; the detector's on its frontal render, taken back onto the "
      'surface (so its 2D truth at yaw 0 is the detector\'s own output).']
  if units:
    lines[-1] += (
        f' fran read as {units["file_units_read_as"]} (-> mm): the '
        "similarity from the mean face's 51 landmarks to its derived ones "
        f'has scale {units["similarity_scale_mean_face_to_scan"]:.3f}; '
        f'outer eye corners {units["outer_eye_corners_mm"]:.1f} mm (mean '
        f'face {units["mean_face_outer_eye_corners_mm"]:.1f} mm).')
  return lines + ['']


def _seconds_line(results: Dict) -> str:
  seconds = results['summary']['seconds_per_reconstruction']
  return (f'Seconds per reconstruction (crop + fit): mean '
          f'{_f(seconds["mean"], 1)}, median {_f(seconds["median"], 1)} '
          f'over {seconds["count"]} faces (2 shared CPU cores).')


def summary_markdown(results: Dict) -> str:
  """The short form for docs/results.md: per scan and yaw, per photo set
  and yaw bin, the clips (no per-photo or per-light rows)."""
  summary = results['summary']
  lines = _scan_protocol(results)
  lines += _scan_table(summary['scan_all'], 'scan (all renders)') + ['']
  lines += _scan_table(summary['scan_by_yaw'], 'scan, yaw') + ['']
  lines += _photo_table(summary['photos_by_yaw']) + ['']
  if results.get('videos'):
    lines += _video_table(results['videos']) + ['']
  lines.append(_seconds_line(results))
  return '\n'.join(lines)


def markdown(results: Dict) -> str:
  """The tables of real.md."""
  summary = results['summary']
  lines = ['## Real scans (renders), NoW-style', '']
  lines += _scan_protocol(results)
  lines += _scan_table(summary['scan_all'], 'scan (all renders)') + ['']
  lines += _scan_table(summary['scan_by_yaw'], 'scan, yaw') + ['']
  lines += _scan_table(summary['scan_by_condition'],
                       'scan, light/background') + ['']
  if summary.get('identity'):
    lines += ['### One identity from several views', '', _IDENTITY_NOTE,
              ''] + _identity_table(summary['identity']) + ['']
  lines += ['### Appearance', '', _APPEARANCE_NOTE, '']
  lines += _scan_appearance_table(summary['scan_all'],
                                  'scan (all renders)') + ['']
  lines += _scan_appearance_table(summary['scan_by_yaw'], 'scan, yaw') + [
      '']
  lines += [
      '## Real photos, 68-point NME',
      '',
      'NME over sqrt(w h) of the truth\'s 68-point box; means over the '
      'photos whose face was found.', '']
  lines += _photo_table(summary['photos_all_by_yaw']) + ['']
  lines += _photo_table(summary['photos_by_yaw']) + ['']
  lines += ['### Appearance', '', _APPEARANCE_NOTE, '']
  lines += _photo_appearance_table(summary['photos_by_set']) + ['']
  lines += _photo_rows(results['photos']) + ['']
  if results.get('videos'):
    lines += ['## Video clips (no truth)', ''] + _video_table(
        results['videos']) + [''] + _motion_table(results['videos'])
  lines.append(_seconds_line(results))
  return '\n'.join(lines)
