"""Plots: curves (x, y arrays) as a table node + plot series + a chart. Imports slicer, never qt."""
from __future__ import annotations

import numpy as np
from vtkmodules.vtkCommonCore import vtkDoubleArray
from vtkmodules.vtkCommonDataModel import vtkTable

from slicercad.errors import InputError

from .app import ensure_scene

_MARKERS = {"none": 0, "cross": 1, "plus": 2, "square": 3, "circle": 4, "diamond": 5}


def add_curves(curves: list[dict], title: str, x_title: str, y_title: str, scene=None, chart=None):
    """A vtkMRMLPlotChartNode with one vtkMRMLPlotSeriesNode per curve. Each curve: name, x, y, and
    optional color (r, g, b), line (bool, default True), marker ('none', 'circle', ...).
    Returns (chart node, {name: series node}, {name: table node})."""
    scene = ensure_scene(scene)
    chart = chart or scene.AddNewNodeByClass("vtkMRMLPlotChartNode", title)
    chart.RemoveAllPlotSeriesNodeIDs()
    chart.SetTitle(title)
    chart.SetXAxisTitle(x_title)
    chart.SetYAxisTitle(y_title)
    series, tables = {}, {}
    for curve in curves:
        x, y = np.asarray(curve["x"], float), np.asarray(curve["y"], float)
        if x.shape != y.shape or x.ndim != 1:
            raise InputError(f"x {x.shape} and y {y.shape} must be equal 1D arrays", curve.get("name", "curve"))
        table = vtkTable()
        for col, values in (("x", x), ("y", y)):
            arr = vtkDoubleArray()
            arr.SetName(col)
            arr.SetNumberOfValues(len(values))
            for i, v in enumerate(values):
                arr.SetValue(i, float(v))
            table.AddColumn(arr)
        tnode = scene.AddNewNodeByClass("vtkMRMLTableNode", f"{title}: {curve['name']}")
        tnode.SetAndObserveTable(table)
        snode = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", curve["name"])
        snode.SetAndObserveTableNodeID(tnode.GetID())
        snode.SetXColumnName("x")
        snode.SetYColumnName("y")
        snode.SetPlotType(snode.PlotTypeScatter)
        snode.SetLineStyle(snode.LineStyleSolid if curve.get("line", True) else snode.LineStyleNone)
        snode.SetMarkerStyle(_MARKERS[curve.get("marker", "none")])
        if "color" in curve:
            snode.SetColor(*curve["color"])
        chart.AddAndObservePlotSeriesNodeID(snode.GetID())
        series[curve["name"]], tables[curve["name"]] = snode, tnode
    return chart, series, tables
