package report

import (
	"bytes"
	"fmt"
	"image/color"
	"io"
	"sort"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

// ChartClient is the client charted for a protocol: infermesh's tuned client of each.
func ChartClient(protocol string) string {
	if protocol == "grpc" {
		return "grpcinfer"
	}
	return "infermesh-transport"
}

// ChartConcurrency picks the concurrency the chart shows: 16 when measured with the charted
// clients, else the lowest measured; 0 when there is nothing to chart.
func (r *Report) ChartConcurrency() int {
	best := 0
	for _, run := range r.Runs {
		if run.Section != SectionHops || run.Client != ChartClient(run.Protocol) || run.Requests == 0 {
			continue
		}
		if run.Concurrency == 16 {
			return 16
		}
		if best == 0 || run.Concurrency < best {
			best = run.Concurrency
		}
	}
	return best
}

// chartData returns the topologies (x), protocols (groups) and, per percentile panel, the
// values[protocol][topology] in µs.
func (r *Report) chartData(conc int) (topos, protos []string, panels [4][][]float64) {
	topoSeen, protoSeen := map[string]bool{}, map[string]bool{}
	type tk struct {
		proxy string
		hops  int
	}
	var tks []tk
	for _, run := range r.Runs {
		if run.Section != SectionHops || run.Concurrency != conc || run.Client != ChartClient(run.Protocol) {
			continue
		}
		if t := run.Topology(); !topoSeen[t] {
			topoSeen[t] = true
			tks = append(tks, tk{run.Proxy, run.Hops})
		}
		if !protoSeen[run.Protocol] {
			protoSeen[run.Protocol] = true
			protos = append(protos, run.Protocol)
		}
	}
	sort.SliceStable(tks, func(i, j int) bool {
		if (tks[i].hops == 0) != (tks[j].hops == 0) {
			return tks[i].hops == 0
		}
		if tks[i].proxy != tks[j].proxy {
			return tks[i].proxy < tks[j].proxy
		}
		return tks[i].hops < tks[j].hops
	})
	sort.SliceStable(protos, func(i, j int) bool { return protoOrder(protos[i]) < protoOrder(protos[j]) })
	for _, t := range tks {
		topos = append(topos, Topology(t.proxy, t.hops))
	}
	idx := r.index()
	for p := range panels {
		panels[p] = make([][]float64, len(protos))
		for i, proto := range protos {
			panels[p][i] = make([]float64, len(tks))
			for j, t := range tks {
				run, ok := find(idx, proto, t.proxy, t.hops, ChartClient(proto), conc, firstPayload(r))
				if !ok {
					continue
				}
				panels[p][i][j] = [4]float64{run.P50, run.P90, run.P99, run.P999}[p]
			}
		}
	}
	return topos, protos, panels
}

func firstPayload(r *Report) string {
	for _, run := range r.Runs {
		if run.Section == SectionHops {
			return run.Payload
		}
	}
	return ""
}

var protoColors = []color.Color{
	color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff},
	color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff},
	color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff},
	color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff},
}

// CanChart reports whether the report has runs for Chart.
func (r *Report) CanChart() bool { return r.ChartConcurrency() > 0 }

// Chart draws the latency percentiles (p50, p90, p99, p99.9: one panel each) of the hops
// section by topology (x) and protocol (bars), for infermesh's tuned client of each protocol
// at ChartConcurrency. format is "svg" or "png". A protocol a proxy cannot carry has no bar.
func (r *Report) Chart(w io.Writer, format string) error {
	conc := r.ChartConcurrency()
	topos, protos, panels := r.chartData(conc)
	if len(topos) == 0 {
		return fmt.Errorf("report: no hops runs to chart")
	}
	names := [4]string{"p50", "p90", "p99", "p99.9"}
	plots := [][]*plot.Plot{make([]*plot.Plot, 2), make([]*plot.Plot, 2)}
	barW := vg.Points(float64(60) / float64(len(protos)))
	for p := range panels {
		pl := plot.New()
		pl.Title.Text = fmt.Sprintf("%s latency (µs), concurrency %d", names[p], conc)
		pl.Y.Label.Text = "µs"
		pl.Y.Min = 0
		top := 0.0
		for i := range protos {
			for _, v := range panels[p][i] {
				top = max(top, v)
			}
		}
		pl.Y.Max = top * 1.3 // headroom for the legend
		pl.Y.Tick.Marker = intTicks{}
		pl.NominalX(topos...)
		pl.X.Min, pl.X.Max = -0.6, float64(len(topos))-0.4
		pl.X.Tick.Label.Rotation = 0.35
		pl.X.Tick.Label.XAlign = draw.XRight
		pl.X.Tick.Label.YAlign = draw.YCenter
		pl.Legend.Top = true
		pl.Legend.Left = true
		for i, proto := range protos {
			bc, err := plotter.NewBarChart(plotter.Values(panels[p][i]), barW)
			if err != nil {
				return err
			}
			bc.Color = protoColors[i%len(protoColors)]
			bc.LineStyle.Width = 0
			bc.Offset = barW * vg.Length(float64(i)-float64(len(protos)-1)/2)
			pl.Add(bc)
			pl.Legend.Add(fmt.Sprintf("%s (%s)", proto, ChartClient(proto)), bc)
		}
		pl.Add(plotter.NewGrid())
		plots[p/2][p%2] = pl
	}
	width, height := 12*vg.Inch, 9*vg.Inch
	tiles := draw.Tiles{Rows: 2, Cols: 2, PadX: vg.Centimeter, PadY: vg.Centimeter,
		PadTop: vg.Millimeter * 4, PadBottom: vg.Millimeter * 4, PadLeft: vg.Millimeter * 4, PadRight: vg.Millimeter * 4}
	switch format {
	case "svg":
		c := vgsvg.New(width, height)
		drawTiles(plots, tiles, draw.New(c))
		var buf bytes.Buffer
		if _, err := c.WriteTo(&buf); err != nil {
			return err
		}
		_, err := w.Write(buf.Bytes())
		return err
	case "png":
		c := vgimg.New(width, height)
		dc := draw.New(c)
		dc.SetColor(color.White)
		dc.Fill(dc.Rectangle.Path())
		drawTiles(plots, tiles, dc)
		_, err := vgimg.PngCanvas{Canvas: c}.WriteTo(w)
		return err
	}
	return fmt.Errorf("report: unknown chart format %q (want svg or png)", format)
}

// intTicks are the default ticks with whole-number labels.
type intTicks struct{}

func (intTicks) Ticks(lo, hi float64) []plot.Tick {
	ticks := plot.DefaultTicks{}.Ticks(lo, hi)
	for i := range ticks {
		if ticks[i].Label != "" {
			ticks[i].Label = fmt.Sprintf("%.0f", ticks[i].Value)
		}
	}
	return ticks
}

func drawTiles(plots [][]*plot.Plot, t draw.Tiles, dc draw.Canvas) {
	canvases := plot.Align(plots, t, dc)
	for i := range plots {
		for j := range plots[i] {
			plots[i][j].Draw(canvases[i][j])
		}
	}
}
