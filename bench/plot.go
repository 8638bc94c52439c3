package bench

import (
	"bytes"
	"fmt"
	"image/color"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// drawable reports whether the plot has a point to draw (a part that
// failed early may leave none).
func (p Plot) drawable() bool {
	for _, s := range p.Series {
		for j := range s.X {
			if j < len(s.Y) && !(p.LogX && s.X[j] <= 0) && !(p.LogY && s.Y[j] <= 0) {
				return true
			}
		}
	}
	return false
}

// PNG draws the plot: one line with points per series, a legend, log axes
// where asked (points that a log axis cannot show are left out).
func (p Plot) PNG() ([]byte, error) {
	pl := plot.New()
	pl.Title.Text = p.Title
	pl.X.Label.Text = p.XLabel
	pl.Y.Label.Text = p.YLabel
	pl.Legend.Top = true
	pl.Legend.Left = true
	pl.BackgroundColor = color.White
	if p.LogX {
		pl.X.Scale = plot.LogScale{}
		pl.X.Tick.Marker = plot.LogTicks{Prec: -1}
	}
	if p.LogY {
		pl.Y.Scale = plot.LogScale{}
		pl.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	}
	pl.Add(plotter.NewGrid())
	drawn := 0
	for i, s := range p.Series {
		var xys plotter.XYs
		for j := range s.X {
			if j >= len(s.Y) || (p.LogX && s.X[j] <= 0) || (p.LogY && s.Y[j] <= 0) {
				continue
			}
			xys = append(xys, plotter.XY{X: s.X[j], Y: s.Y[j]})
		}
		if len(xys) == 0 {
			continue
		}
		line, points, err := plotter.NewLinePoints(xys)
		if err != nil {
			return nil, fmt.Errorf("series %q: %w", s.Name, err)
		}
		line.Color = plotutil.Color(i)
		line.Dashes = plotutil.Dashes(i / 7)
		points.Color = plotutil.Color(i)
		points.Shape = plotutil.Shape(i)
		pl.Add(line, points)
		pl.Legend.Add(s.Name, line, points)
		drawn++
	}
	if drawn == 0 {
		return nil, fmt.Errorf("no points to draw")
	}
	if !p.LogY && pl.Y.Min > 0 {
		pl.Y.Min = 0 // a linear axis of costs or rates starts at zero
	}
	w, err := pl.WriterTo(8*vg.Inch, 5*vg.Inch, "png")
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if _, err := w.WriteTo(&b); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
